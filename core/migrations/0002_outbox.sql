-- seawall's schema, version 2: the outbox of writes with `fallback = queue`
-- when the runtime is built with `.postgres(..)`, and the leases on its
-- lanes that let several processes drain it. Never edited once shipped.

-- One row per queued write, in the order it was queued (`ticket`). A row
-- stays when it is settled (delivered or dead), with the answer or the
-- error, so that its status can be read from any process.
CREATE TABLE outbox (
    ticket       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contract     text NOT NULL,
    method       text NOT NULL,
    -- The write's idempotency key, sent again on every delivery.
    key          text NOT NULL,
    -- The lane it drains in: its ordering key (`order_by`), or '' (the
    -- contract's writes without one).
    lane         text NOT NULL,
    order_key    text,
    arguments    jsonb NOT NULL,
    -- The arguments `redact = [..]` names (sealed in `arguments`).
    redacted     text[] NOT NULL DEFAULT '{}',
    enqueued_at  timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'delivered', 'dead')),
    -- The vendor's answer (delivered) or its error (dead).
    answer       jsonb,
    error        text,
    settled_at   timestamptz
);

-- The drain's reads: a contract's pending writes, by lane, in order.
CREATE INDEX outbox_pending ON outbox (contract, lane, ticket) WHERE status = 'pending';
-- Dead letters, oldest first.
CREATE INDEX outbox_dead ON outbox (ticket) WHERE status = 'dead';

-- Who drains a lane: a process delivers a lane's writes only while it holds
-- the lane's lease, claimed in one `INSERT .. ON CONFLICT DO UPDATE .. WHERE`
-- the lease is its own or ran out, and renewed before each delivery.
CREATE TABLE outbox_lanes (
    contract     text NOT NULL,
    lane         text NOT NULL,
    owner        text NOT NULL,
    lease_until  timestamptz NOT NULL,
    PRIMARY KEY (contract, lane)
);
