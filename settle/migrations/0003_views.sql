-- spotx settlement schema 3: balances (materialized, rebuildable) and the views oncall reads.

-- Balance per account and asset over every posting. REFRESH MATERIALIZED VIEW CONCURRENTLY
-- balances needs the unique index. Reconciliation at a seq reads ledger_entries directly.
CREATE MATERIALIZED VIEW balances AS
    SELECT account, asset, sum(amount)::bigint AS balance, count(*) AS entries
    FROM ledger_entries
    GROUP BY account, asset;
CREATE UNIQUE INDEX balances_account_asset ON balances (account, asset);

-- Postings with names and decimal amounts, for humans.
CREATE VIEW ledger_entries_readable AS
    SELECT e.id, e.shard, e.seq, e.leg, e.account, a.name AS asset,
           e.amount, round(e.amount::numeric / (10::numeric ^ a.scale), a.scale) AS amount_decimal,
           k.name AS kind, s.name AS symbol, e.trade_id, e.fencing_token, e.event_time,
           e.posted_at
    FROM ledger_entries e
    JOIN ledger_kinds k ON k.kind = e.kind
    LEFT JOIN assets a ON a.asset = e.asset
    LEFT JOIN symbols s ON s.symbol = e.symbol;

-- RUNBOOK §5: SELECT * FROM smoke_ledger_entries ORDER BY id DESC LIMIT 20;
-- Postings on the smoke symbol, or of an account marked 'smoke' (settle.catalog.sync).
CREATE VIEW smoke_ledger_entries AS
    SELECT r.*
    FROM ledger_entries_readable r
    WHERE r.symbol IN (SELECT name FROM symbols WHERE smoke)
       OR r.account IN (SELECT account FROM accounts WHERE kind = 'smoke');
