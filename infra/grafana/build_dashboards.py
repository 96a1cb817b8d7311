"""Generate infra/grafana/dashboards/spotx.json: the runbook §2 dashboards, one row per area.

Run ``python infra/grafana/build_dashboards.py`` after changing a panel; a test checks that the
committed JSON is what this script produces and that every metric it queries is one spotx exports.
"""

from __future__ import annotations

import json
from pathlib import Path

P50 = 'histogram_quantile(0.5, sum by (le) (rate({m}_bucket[1m])))'
P99 = 'histogram_quantile(0.99, sum by (le) (rate({m}_bucket[1m])))'

ROWS: list[tuple[str, list[tuple[str, list[str], str]]]] = [
    ("Trading API", [
        ("Order entry latency p50/p99 (REST)", [
            'histogram_quantile(0.5, sum by (le, route) (rate(http_request_duration_seconds_bucket[1m])))',
            'histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket[1m])))'], "s"),
        ("WS request latency p50/p99", [
            'histogram_quantile(0.5, sum by (le, method) (rate(ws_request_duration_seconds_bucket[1m])))',
            'histogram_quantile(0.99, sum by (le, method) (rate(ws_request_duration_seconds_bucket[1m])))'], "s"),
        ("Error rate by code", ['sum by (error) (rate(api_errors_total[1m]))'], "reqps"),
    ]),
    ("Engine", [
        ("Queue depth", ["engine_queue_depth"], "short"),
        ("Loop p99 / WAL fsync p99", [P99.format(m="engine_loop_seconds"), P99.format(m="wal_fsync_seconds")], "s"),
        ("Per-symbol TPS", ['sum by (symbol) (rate(engine_commands_total[1m]))'], "ops"),
        ("Seq rate (all, per symbol)", ["rate(engine_seq[1m])", "sum by (symbol) (rate(engine_symbol_seq[1m]))"], "ops"),
        ("CPU by process", ['rate(spotx_process_cpu_seconds_total[1m])'], "percentunit"),
        ("Engine GC collections (the loop does not allocate per message) / RSS",
         ['sum by (process) (rate(spotx_process_gc_collections_total[1m]))',
          'spotx_process_resident_memory_bytes'], "short"),
        ("Data disk: WAL and snapshots on disk / free",
         ["spotx_wal_disk_bytes", "sum(spotx_snapshot_disk_bytes)", "spotx_data_fs_free_bytes"],
         "bytes"),
        ("WAL growth", ["deriv(spotx_wal_disk_bytes[15m])"], "Bps"),
        ("WAL retention: oldest seq kept / scheduled prune exit code (0 done)",
         ["spotx_wal_first_seq", "spotx_wal_retention_last_exit_code"], "short"),
    ]),
    ("Kafka", [
        ("Outbox backlog (produce lag)", ["outbox_backlog_events"], "short"),
        ("Consumer lag", ["ledger_consumer_lag_events"], "short"),
        ("Produce errors / broker health", ['rate(outbox_produce_errors_total[1m])', 'outbox_broker_up'], "short"),
    ]),
    ("Ledger", [
        ("Settlement lag p50/p99", [P50.format(m="settlement_lag_seconds"), P99.format(m="settlement_lag_seconds")], "s"),
        ("DB transaction errors", ['rate(ledger_db_tx_errors_total[1m])'], "short"),
        ("Invariant checks", ['sum by (invariant) (invariant_violation_total)', 'sum by (result) (rate(invariant_checks_total[5m]))'], "short"),
    ]),
    ("WS", [
        ("Connected clients", ["sum(ws_connected_clients)"], "short"),
        ("Outbound messages / bytes", ['sum(rate(ws_messages_sent_total[1m]))', 'sum(rate(ws_sent_bytes_total[1m]))'], "short"),
        ("Closes by reason", ['sum by (reason) (rate(ws_close_total[5m]))'], "short"),
        ("Backlog per connection p99 (bytes) / publish-to-send p99",
         [P99.format(m="ws_backlog_bytes"), P99.format(m="md_publish_to_send_seconds")], "short"),
    ]),
    ("Edge auth", [
        ("auth_fail_total by reason", ['sum by (reason) (rate(auth_fail_total[5m]))'], "short"),
        ("replay_detect_total", ['rate(replay_detect_total[5m])'], "short"),
        ("Rate-limit drops by reason", ['sum by (reason) (rate(rate_limit_drops_total[5m]))'], "short"),
    ]),
]


def build() -> dict:
    panels = []
    y = 0
    pid = 1
    for title, row in ROWS:
        panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        pid += 1
        y += 1
        for i, (ptitle, exprs, unit) in enumerate(row):
            panels.append({
                "type": "timeseries", "title": ptitle, "id": pid,
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": chr(65 + j), "expr": e} for j, e in enumerate(exprs)],
            })
            pid += 1
        y += 8 * ((len(row) + 2) // 3)
    return {"title": "spotx", "uid": "spotx-main", "schemaVersion": 39, "version": 1,
            "time": {"from": "now-1h", "to": "now"}, "refresh": "5s", "panels": panels,
            "tags": ["spotx"], "templating": {"list": []}}


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("dashboards") / "spotx.json"
    out.write_text(render())
