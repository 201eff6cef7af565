-- seawall's schema, version 1: the idempotency store of keyed writes with
-- `idempotent(.., store)`. Runs in the runtime's schema (`search_path`).
-- Later versions add files beside this one (0002_..), never edit it: sqlx's
-- migrator refuses a migration whose text changed after it ran.

-- One row per idempotency key. While a call runs, the row is its claim
-- (`claim_token`, `lease_until`); once the call completed, the row is the
-- record (`record`, `expires_at`). Never both, never neither.
CREATE TABLE idempotency (
    key          text PRIMARY KEY,
    -- The fingerprint of the whole payload of the call that claimed or
    -- recorded the key: another payload under the key is a conflict.
    fingerprint  text NOT NULL,
    -- `<replica>:<random>`: only the call that claimed the key renews or
    -- releases its claim.
    claim_token  text,
    -- When the claim runs out unless its holder renews it (every third of
    -- the lease, while the call runs).
    lease_until  timestamptz,
    -- The completed outcome: the same JSON the local store keeps.
    record       text,
    -- When the record is forgotten (recorded at + the policy's retention).
    expires_at   timestamptz,
    CONSTRAINT idempotency_claim_or_record CHECK (
        (claim_token IS NOT NULL AND lease_until IS NOT NULL AND record IS NULL AND expires_at IS NULL)
        OR (claim_token IS NULL AND lease_until IS NULL AND record IS NOT NULL AND expires_at IS NOT NULL)
    )
);

-- For the sweep of records past their retention.
CREATE INDEX idempotency_expires_at ON idempotency (expires_at) WHERE record IS NOT NULL;
