-- spotx settlement schema 2: leadership leases, fencing tokens enforced in the write path, and an
-- append-only ledger.

-- A lease with a monotonically increasing fencing token (DESIGN.md §9). Acquiring an expired (or
-- free) lease bumps the token; renewing keeps it. settle/leases.py is the client.
CREATE TABLE leases (
    name            text        PRIMARY KEY,
    holder          text        NOT NULL,
    fencing_token   bigint      NOT NULL CHECK (fencing_token > 0),
    expires_at      timestamptz NOT NULL,
    acquired_at     timestamptz NOT NULL DEFAULT now(),
    renewed_at      timestamptz NOT NULL DEFAULT now()
);

-- The highest fencing token any ledger write for a shard carried.
CREATE TABLE fencing_high_water (
    shard           smallint    PRIMARY KEY,
    fencing_token   bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Raise SQLSTATE SX001 (FENCING_TOKEN) when p_min is below the shard's high-water mark, else
-- raise the mark to p_max. The row lock serialises writers of one shard until they commit.
CREATE FUNCTION settle_fence(p_shard smallint, p_min bigint, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    hw bigint;
BEGIN
    INSERT INTO fencing_high_water (shard, fencing_token) VALUES (p_shard, p_max)
        ON CONFLICT (shard) DO NOTHING;
    SELECT fencing_token INTO hw FROM fencing_high_water WHERE shard = p_shard FOR UPDATE;
    IF p_min < hw THEN
        RAISE EXCEPTION 'FENCING_TOKEN: shard % token % is lower than %, the highest seen',
            p_shard, p_min, hw USING ERRCODE = 'SX001';
    END IF;
    IF p_max > hw THEN
        UPDATE fencing_high_water SET fencing_token = p_max, updated_at = now()
            WHERE shard = p_shard;
        hw := p_max;
    END IF;
    RETURN hw;
END $$;

-- Every insert path into the ledger (the writer, an operator's psql) goes through the fence.
-- Statement level, over the transition table: one check per statement, not per row.
CREATE FUNCTION ledger_entries_fence() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT shard, min(fencing_token) AS lo, max(fencing_token) AS hi
             FROM new_rows GROUP BY shard LOOP
        PERFORM settle_fence(r.shard, r.lo, r.hi);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_fence AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_fence();

-- The ledger is append-only: mistakes are fixed with CORRECTION entries, never edited away.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only (% refused); post a CORRECTION entry', TG_OP
        USING ERRCODE = 'SX002';
END $$;

CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();
