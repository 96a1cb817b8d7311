"""Settlement: the WAL projected into Kafka and a Postgres double-entry ledger (DESIGN.md §8, §9).

Modules: migrate (schema, ``migrations/NNNN_*.sql``), catalog (symbols/assets/special accounts),
postings (events -> balanced legs, pure), copybin (binary COPY encoding), ledger (the transactional
writer: idempotency keys, fencing, retries), walbatch (WAL frames -> engine batches), embedded
(WAL -> ledger), schema + outbox (WAL -> Kafka, SCHEMA.md), consumer (Kafka -> ledger), invariants,
reconcile, lag (measurement and the T2/T3 policy), leases, metrics, process (the settle process),
synth (synthetic event streams for tests and the bench). CLI: ``python -m settle``.
"""
