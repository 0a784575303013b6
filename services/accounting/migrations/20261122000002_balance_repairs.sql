-- Balances rewritten from the transfers by RepairBalances: what each account had, what its
-- transfers add up to, when (the ledger clock) and why. Append-only, like the transfers.
CREATE TABLE balance_repairs (
    account_id uuid NOT NULL,
    timestamp bigint NOT NULL,
    ledger bigint NOT NULL,
    reason text NOT NULL,
    before_debits_pending bigint NOT NULL,
    before_debits_posted bigint NOT NULL,
    before_credits_pending bigint NOT NULL,
    before_credits_posted bigint NOT NULL,
    after_debits_pending bigint NOT NULL,
    after_debits_posted bigint NOT NULL,
    after_credits_pending bigint NOT NULL,
    after_credits_posted bigint NOT NULL,
    PRIMARY KEY (account_id, timestamp)
);
