-- seawall's schema, version 3: where a row of the outbox came from when a
-- runtime moved it there from its embedded log (a write queued there while
-- the database was away). Never edited once shipped.

-- The write's origin in that log (its contract, method, key, enqueue time
-- and local ticket): unique, so that a move cut short by a crash and done
-- again after the restart inserts each write once.
ALTER TABLE outbox ADD COLUMN origin text;
CREATE UNIQUE INDEX outbox_origin ON outbox (origin) WHERE origin IS NOT NULL;
