-- Settlement schema, version 1. Expand/contract: later versions only add nullable columns or new
-- tables first, and drop what version N-1 still reads only in a later release.

CREATE TABLE IF NOT EXISTS settlement_windows (
    window_id           text PRIMARY KEY,
    channel_id          text NOT NULL,
    currency            text NOT NULL,
    business_date       date NOT NULL,
    opens_at            timestamptz NOT NULL,
    cut_off_at          timestamptz NOT NULL,
    value_date          date NOT NULL,
    -- 1 open, 2 closed (postings not yet accepted), 3 settled, 4 reconciled
    state               smallint NOT NULL DEFAULT 1,
    -- Bumped when accounting refuses a close, so that the next close uses fresh transfer ids.
    close_attempt       integer NOT NULL DEFAULT 0,
    closed_at           timestamptz,
    -- Frozen at close; computed from the items while open.
    item_count          bigint,
    gross_payments      bigint,
    gross_refunds       bigint,
    fees                bigint,
    instructions_sha256 text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS settlement_windows_due ON settlement_windows (state, cut_off_at);

CREATE TABLE IF NOT EXISTS settlement_items (
    item_id           uuid PRIMARY KEY,
    kind              smallint NOT NULL,
    payment_id        uuid NOT NULL,
    channel_id        text NOT NULL,
    merchant_id       text NOT NULL,
    currency          text NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    fee               bigint NOT NULL CHECK (fee >= 0),
    channel_reference text NOT NULL,
    cleared_at        timestamptz NOT NULL,
    window_id         text NOT NULL REFERENCES settlement_windows (window_id),
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS settlement_items_window ON settlement_items (window_id, item_id);

CREATE TABLE IF NOT EXISTS settlement_positions (
    window_id      text NOT NULL REFERENCES settlement_windows (window_id),
    participant_id text NOT NULL,
    receivable     bigint NOT NULL,
    payable        bigint NOT NULL,
    net            bigint NOT NULL,
    PRIMARY KEY (window_id, participant_id)
);

-- Instruction documents of a closed window: kind 'pacs009' or 'csv'.
CREATE TABLE IF NOT EXISTS settlement_documents (
    window_id text NOT NULL REFERENCES settlement_windows (window_id),
    kind      text NOT NULL,
    body      bytea NOT NULL,
    sha256    text NOT NULL,
    PRIMARY KEY (window_id, kind)
);

-- The ledger transfers of a close attempt, kept so that a retry re-sends exactly the same batch.
CREATE TABLE IF NOT EXISTS settlement_postings (
    window_id      text NOT NULL REFERENCES settlement_windows (window_id),
    seq            integer NOT NULL,
    transfer_id    uuid NOT NULL,
    merchant_id    text NOT NULL,
    -- true: clearing:<channel> → merchant:<merchant>; false: the other way (refunds exceeded)
    to_merchant    boolean NOT NULL,
    amount         bigint NOT NULL CHECK (amount > 0),
    PRIMARY KEY (window_id, seq)
);

CREATE TABLE IF NOT EXISTS settlement_reconciliations (
    window_id        text PRIMARY KEY REFERENCES settlement_windows (window_id),
    statement_sha256 text NOT NULL,
    report_json      bytea NOT NULL,
    reconciled_at    timestamptz NOT NULL DEFAULT now()
);
