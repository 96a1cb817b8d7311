-- spotx settlement schema 7: more than one audit row per (shard, seq).
--
-- Operator corrections (settle/correct.py, `spotx ledger correct`) are audited under their
-- correction shard and the engine seq they are "as of"; several can share that seq. The WAL's
-- admin notes keep sub = 0, so their projection stays idempotent on (shard, seq, 0).
ALTER TABLE audit_log ADD COLUMN sub smallint NOT NULL DEFAULT 0 CHECK (sub >= 0);
ALTER TABLE audit_log DROP CONSTRAINT audit_log_shard_seq_key;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_shard_seq_sub_key UNIQUE (shard, seq, sub);
