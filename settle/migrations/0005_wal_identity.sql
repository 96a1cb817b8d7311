-- Which WAL a shard's ledger settles. The engine's WAL has a random id fixed at its creation
-- (durable.pos / segment headers). Postings are keyed by (shard, seq, leg) and settlement resumes
-- from a seq, so a *different* WAL (a fresh data directory) against the same shard would have its
-- postings silently skipped as "already posted". The settler binds the shard to its WAL id on first
-- use and refuses any other WAL for that shard with a clear error.
CREATE TABLE IF NOT EXISTS shard_wal (
    shard       smallint    PRIMARY KEY,
    wal_id      bigint      NOT NULL,
    bound_at    timestamptz NOT NULL DEFAULT now()
);
