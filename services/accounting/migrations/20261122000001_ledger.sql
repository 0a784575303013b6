-- The ledger. Expand/contract: later migrations only add (nullable or defaulted columns, new
-- tables, new indexes); a column or table is dropped only once no deployed version reads it.
-- u64/u32 values live in bigint (user_data_64 bit-cast); balances and amounts are at most
-- 2^63-1 (the domain's BALANCE_MAX).

-- The ledger clock: every write transaction updates this one row first. That orders all writes
-- of all replicas (strict serialisability) and hands out unique, increasing timestamps in
-- commit order. Group commit amortises the lock over many requests.
CREATE TABLE ledger_clock (
    id smallint PRIMARY KEY CHECK (id = 1),
    last_timestamp bigint NOT NULL
);
INSERT INTO ledger_clock (id, last_timestamp) VALUES (1, 0);

CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    ledger bigint NOT NULL,
    code integer NOT NULL,
    flags integer NOT NULL,
    debits_pending bigint NOT NULL CHECK (debits_pending >= 0),
    debits_posted bigint NOT NULL CHECK (debits_posted >= 0),
    credits_pending bigint NOT NULL CHECK (credits_pending >= 0),
    credits_posted bigint NOT NULL CHECK (credits_posted >= 0),
    user_data_128 uuid NOT NULL,
    user_data_64 bigint NOT NULL,
    user_data_32 bigint NOT NULL,
    timestamp bigint NOT NULL UNIQUE
);

-- Immutable: never updated or deleted. pending_id is the nil uuid when there is none.
CREATE TABLE transfers (
    id uuid PRIMARY KEY,
    debit_account_id uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    pending_id uuid NOT NULL,
    user_data_128 uuid NOT NULL,
    user_data_64 bigint NOT NULL,
    user_data_32 bigint NOT NULL,
    timeout bigint NOT NULL,
    ledger bigint NOT NULL,
    code integer NOT NULL,
    flags integer NOT NULL,
    timestamp bigint NOT NULL UNIQUE
);
CREATE INDEX transfers_debit_account ON transfers (debit_account_id, timestamp);
CREATE INDEX transfers_credit_account ON transfers (credit_account_id, timestamp);

-- The one mutable fact about a pending transfer: 1 pending, 2 posted, 3 voided, 4 expired.
CREATE TABLE pending_transfers (
    id uuid PRIMARY KEY,
    state smallint NOT NULL,
    expires_at bigint NOT NULL -- 0 = no timeout
);
CREATE INDEX pending_transfers_due ON pending_transfers (expires_at) WHERE state = 1 AND expires_at > 0;

-- Frozen failures: these ids answer id_already_failed forever.
CREATE TABLE failed_transfers (
    id uuid PRIMARY KEY,
    result integer NOT NULL,
    timestamp bigint NOT NULL
);

-- Balances after each transfer, for accounts with flags.history.
CREATE TABLE account_balances (
    account_id uuid NOT NULL,
    timestamp bigint NOT NULL,
    transfer_id uuid NOT NULL,
    debits_pending bigint NOT NULL,
    debits_posted bigint NOT NULL,
    credits_pending bigint NOT NULL,
    credits_posted bigint NOT NULL,
    PRIMARY KEY (account_id, timestamp)
);
