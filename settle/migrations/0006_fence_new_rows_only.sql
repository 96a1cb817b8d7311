-- spotx settlement schema 5: fence postings, not batches.
--
-- A batch that replays rows already in the ledger (a consumer re-reading Kafka, a replay "from
-- the last good offset" after a leader change) carries the old leader's token legitimately: those
-- rows are not new writes. The fence therefore applies to the rows actually inserted — which is
-- what the statement trigger on ledger_entries (0002) checks, over its transition table — and
-- settle_commit no longer fences the whole batch up front. It only records the batch's highest
-- token in settlement_progress. Stale-leader postings are still refused (SQLSTATE SX001).

CREATE OR REPLACE FUNCTION settle_commit(
    p_shard smallint, p_consumer text, p_last_seq bigint, p_fmin bigint, p_fmax bigint,
    p_firsts bigint[], p_lasts bigint[], p_legs integer[], p_offsets jsonb, p_events bigint,
    p_postings bigint, p_accounts bigint[], p_account_seqs bigint[]) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_accounts) > 0 THEN
        INSERT INTO accounts (account, first_shard, first_seq)
            SELECT a, p_shard, s FROM unnest(p_accounts, p_account_seqs) AS t(a, s)
            ON CONFLICT (account) DO NOTHING;
    END IF;
    IF cardinality(p_firsts) > 0 THEN
        INSERT INTO settled_batches (shard, first_seq, last_seq, legs, fencing_token, consumer)
            SELECT p_shard, f, l, g, p_fmax, p_consumer
            FROM unnest(p_firsts, p_lasts, p_legs) AS t(f, l, g)
            ON CONFLICT (shard, first_seq) DO NOTHING;
    END IF;
    INSERT INTO settlement_progress AS p
        (consumer, shard, last_seq, kafka_offsets, fencing_token, events, postings, updated_at)
    VALUES (p_consumer, p_shard, p_last_seq, p_offsets, p_fmax, p_events, p_postings, now())
    ON CONFLICT (consumer, shard) DO UPDATE SET
        last_seq = greatest(p.last_seq, EXCLUDED.last_seq),
        kafka_offsets = p.kafka_offsets || EXCLUDED.kafka_offsets,
        fencing_token = greatest(p.fencing_token, EXCLUDED.fencing_token),
        events = p.events + EXCLUDED.events,
        postings = p.postings + EXCLUDED.postings,
        updated_at = now();
    RETURN p_fmax;
END $$;
