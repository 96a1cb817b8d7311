"""Settlement metrics: ordinary prometheus_client objects (RUNBOOK §2 "Kafka" and "Ledger").

Under the supervisor, ``PROMETHEUS_MULTIPROC_DIR`` points prometheus_client at mmap'd files that
the one exporter merges (pipeline/exporter.py); standalone, they live in the default registry.
Names match infra/prometheus/alerts.yml and the Grafana dashboards. Labels are low-cardinality
(an invariant name, an error class, a consumer name).

``observe_many`` records a whole batch of lags with one numpy bucket count instead of one
``observe`` per event (50 k events/s would otherwise spend a noticeable share of a core here).
"""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
                 30.0, 60.0, 300.0)

SETTLEMENT_LAG = Histogram(
    "settlement_lag_seconds", "Event sequencing time (ts_ns) to its ledger commit",
    buckets=LAG_BUCKETS_S)
CONSUMER_LAG = Gauge(
    "ledger_consumer_lag_events",
    "Not yet settled: Kafka messages behind the high watermark, or WAL seqs behind the durable seq",
    ["consumer"], multiprocess_mode="livesum")
LEDGER_SEQ = Gauge("settle_ledger_seq", "Last command seq settled into the ledger", ["consumer"],
                   multiprocess_mode="livemax")
DB_TX_ERRORS = Counter("ledger_db_tx_errors_total", "Failed ledger transactions (each attempt)",
                       ["error"])
FENCING_REJECTS = Counter("ledger_fencing_rejects_total",
                          "Ledger batches rejected with FENCING_TOKEN (stale leader token)")
POSTINGS = Counter("ledger_postings_total", "Ledger rows inserted")
DUPLICATES = Counter("ledger_duplicate_postings_total",
                     "Postings skipped because their (shard, seq, leg) was already posted (replay)")
BATCHES = Counter("ledger_batches_total", "Ledger transactions committed", ["path"])
CONSUMER_COMMIT_ERRORS = Counter("ledger_consumer_commit_errors_total",
                                 "Kafka offset commits that failed after the database commit",
                                 ["error"])
AUDIT_ROWS = Counter("ledger_audit_rows_total", "Audit notes projected into audit_log")

OUTBOX_BACKLOG = Gauge("outbox_backlog_events",
                       "Events durable in the WAL but not yet acknowledged by Kafka (approx.)",
                       multiprocess_mode="livesum")
OUTBOX_DELIVERED = Counter("outbox_delivered_total", "Messages acknowledged by Kafka (acks=all)")
PRODUCE_ERRORS = Counter("outbox_produce_errors_total", "Kafka produce / delivery errors",
                         ["reason"])
BROKER_UP = Gauge("outbox_broker_up", "1 while the outbox reaches a Kafka broker",
                  multiprocess_mode="livemax")

INVARIANT_VIOLATIONS = Counter("invariant_violation_total", "Ledger invariant violations found",
                               ["invariant"])
INVARIANT_CHECKS = Counter("invariant_checks_total", "Invariant checks run", ["result"])
LAG_POLICY_STATE = Gauge("settlement_lag_policy_state",
                         "Settlement lag policy: 0 normal, 1 throttle (above T2), 2 halt (above T3)",
                         multiprocess_mode="livemax")
LAG_COMMAND_ERRORS = Counter("settle_lag_command_errors_total",
                             "SET_LAG_HALT commands that could not be handed to the engine")


def observe_many(hist: Histogram, values_s: np.ndarray) -> None:
    """``hist.observe(v)`` for every v, counted per bucket in one pass."""
    if len(values_s) == 0:
        return
    buckets = getattr(hist, "_buckets", None)
    bounds = getattr(hist, "_upper_bounds", None)
    total = getattr(hist, "_sum", None)
    if buckets is None or bounds is None or total is None:  # a prometheus_client without them
        for v in values_s.tolist():
            hist.observe(v)
        return
    idx = np.searchsorted(np.asarray(bounds, np.float64), values_s, side="left")
    counts = np.bincount(idx, minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(values_s.sum()))
