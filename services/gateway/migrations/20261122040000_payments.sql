-- Payments and refunds of the gateway. Expand/contract: later migrations only add nullable
-- columns or columns with defaults, so that version N-1 keeps working on version N's schema.

CREATE TABLE payments (
    payment_id        uuid        PRIMARY KEY,
    merchant_id       text        NOT NULL,
    idempotency_key   text        NOT NULL,
    payer_id          text        NOT NULL,
    amount_minor      bigint      NOT NULL CHECK (amount_minor > 0),
    currency          text        NOT NULL,
    method            integer     NOT NULL,
    scene             text        NOT NULL,
    card_bin          text        NOT NULL,
    status            smallint    NOT NULL,
    step              smallint    NOT NULL,
    failure_reason    text        NOT NULL DEFAULT '',
    channel_id        text        NOT NULL DEFAULT '',
    channel_reference text        NOT NULL DEFAULT '',
    fee_minor         bigint      NOT NULL DEFAULT 0,
    -- Refunded or being refunded (reserved when a refund is accepted, released if it fails).
    refunded_minor    bigint      NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    -- Fixed when the hold is first sent: every retry must send the same body.
    hold_timeout_secs integer     NOT NULL DEFAULT 0,
    -- Fixed when posted: the settlement item's body must be the same on every retry.
    cleared_at        timestamptz,
    trace_id          text        NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    -- Who drives the payment now, and until when: the request that created it, then (once the
    -- lease has run out) one recovery worker of one replica.
    lease_owner       uuid,
    lease_until       timestamptz,
    recoveries        integer     NOT NULL DEFAULT 0,
    UNIQUE (merchant_id, idempotency_key)
);

CREATE INDEX payments_in_flight ON payments (lease_until) WHERE status = 1;
CREATE INDEX payments_by_merchant ON payments (merchant_id, created_at DESC, payment_id DESC);

CREATE TABLE refunds (
    refund_id         uuid        PRIMARY KEY,
    payment_id        uuid        NOT NULL REFERENCES payments (payment_id),
    idempotency_key   text        NOT NULL,
    amount_minor      bigint      NOT NULL CHECK (amount_minor > 0),
    reason            text        NOT NULL DEFAULT '',
    status            smallint    NOT NULL,
    step              smallint    NOT NULL,
    failure_reason    text        NOT NULL DEFAULT '',
    channel_reference text        NOT NULL DEFAULT '',
    cleared_at        timestamptz,
    trace_id          text        NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    lease_owner       uuid,
    lease_until       timestamptz,
    UNIQUE (payment_id, idempotency_key)
);

CREATE INDEX refunds_in_flight ON refunds (lease_until) WHERE status = 1;
CREATE INDEX refunds_by_payment ON refunds (payment_id, created_at);
