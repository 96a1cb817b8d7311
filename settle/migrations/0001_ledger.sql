-- spotx settlement schema 1: catalog, the double-entry ledger, progress, audit, invariants.
-- Money is bigint minor units (assets.scale decimals); a row's sign is the direction (+ credit).
-- The idempotency key of a posting is (shard, seq, leg): seq = the engine command seq, leg =
-- ordinal of the event within its seq * 8 + slot (settle/postings.py), stable under replay.

CREATE TABLE assets (
    asset       smallint PRIMARY KEY,
    name        text     NOT NULL UNIQUE,
    scale       smallint NOT NULL CHECK (scale BETWEEN 0 AND 18)
);

CREATE TABLE symbols (
    symbol      integer  PRIMARY KEY,
    name        text     NOT NULL UNIQUE,
    base        smallint NOT NULL REFERENCES assets,
    quote       smallint NOT NULL REFERENCES assets,
    lot_minor   bigint   NOT NULL CHECK (lot_minor > 0),
    smoke       boolean  NOT NULL DEFAULT false
);

-- Every account that ever appeared in a posting (the writer adds new ones in the posting
-- transaction), plus the special ones: the fee account, the external (deposits/withdrawals)
-- counterparty, and accounts the smoke test uses.
CREATE TABLE accounts (
    account     bigint   PRIMARY KEY,
    kind        text     NOT NULL DEFAULT 'user'
                         CHECK (kind IN ('user', 'fee', 'external', 'smoke')),
    first_shard smallint,
    first_seq   bigint,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_kinds (
    kind        smallint PRIMARY KEY,
    name        text     NOT NULL UNIQUE
);
INSERT INTO ledger_kinds VALUES (1, 'TRADE'), (2, 'FEE'), (3, 'DEPOSIT'), (4, 'WITHDRAWAL'),
                                (5, 'CORRECTION');

-- Append-only (0002 enforces it). trade_id 0 = not a trade; symbol 0 = no symbol.
-- Operator corrections (kind CORRECTION) are posted under their own shard number (-1).
CREATE TABLE ledger_entries (
    id              bigserial   PRIMARY KEY,
    shard           smallint    NOT NULL,
    seq             bigint      NOT NULL,
    leg             integer     NOT NULL CHECK (leg >= 0),
    account         bigint      NOT NULL,
    asset           smallint    NOT NULL,
    amount          bigint      NOT NULL CHECK (amount <> 0),
    kind            smallint    NOT NULL CHECK (kind BETWEEN 1 AND 5),
    symbol          integer     NOT NULL DEFAULT 0,
    trade_id        bigint      NOT NULL DEFAULT 0,
    fencing_token   bigint      NOT NULL CHECK (fencing_token >= 0),
    event_time      timestamptz NOT NULL,
    posted_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_entries_idem UNIQUE (shard, seq, leg)
);

-- One row per WAL batch (COMMANDS frame) settled: seqs first_seq..last_seq produced `legs`
-- postings. Contiguous per shard; the invariant checker compares legs with the ledger.
CREATE TABLE settled_batches (
    shard           smallint    NOT NULL,
    first_seq       bigint      NOT NULL,
    last_seq        bigint      NOT NULL,
    legs            integer     NOT NULL CHECK (legs >= 0),
    fencing_token   bigint      NOT NULL,
    consumer        text        NOT NULL,
    settled_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, first_seq),
    CHECK (last_seq >= first_seq)
);

-- Written in the same transaction as the postings it covers.
CREATE TABLE settlement_progress (
    consumer        text        NOT NULL,
    shard           smallint    NOT NULL,
    last_seq        bigint      NOT NULL DEFAULT 0,
    kafka_offsets   jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- {"topic:partition": next offset}
    fencing_token   bigint      NOT NULL DEFAULT 0,
    events          bigint      NOT NULL DEFAULT 0,
    postings        bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, shard)
);

-- Projected from WAL BLOB frames (the operator's audit note attached to a command seq).
CREATE TABLE audit_log (
    id              bigserial   PRIMARY KEY,
    shard           smallint    NOT NULL,
    seq             bigint      NOT NULL,
    actor           text,
    action          text,
    symbol          text,
    reason          text,
    ticket          text,
    note            jsonb       NOT NULL,
    fencing_token   bigint      NOT NULL DEFAULT 0,
    time            timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shard, seq)
);

CREATE TABLE invariant_violations (
    id              bigserial   PRIMARY KEY,
    invariant       text        NOT NULL,
    shard           smallint,
    evidence        jsonb       NOT NULL,
    detected_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invariant_violations_detected ON invariant_violations (detected_at);

-- Where the incremental checks (per-batch coverage) got to.
CREATE TABLE invariant_checkpoints (
    invariant       text        NOT NULL,
    shard           smallint    NOT NULL,
    checked_seq     bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (invariant, shard)
);
