"""The edge process's Prometheus metrics (prometheus_client objects; RUNBOOK §2, DESIGN.md §11).

In the stack the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at ``<run_dir>/prom/`` before it
starts the edges; prometheus_client then keeps each value in an mmap'd file (no syscall per update)
and the one exporter (``pipeline.exporter``) merges all processes. Each ``EdgeMetrics`` uses its own
``CollectorRegistry`` so several edges in one test process do not collide; ``render()`` gives the
text format of that registry (tests, ``--inproc`` dev mode).

Names are the ones the dashboards and alert rules query (infra/grafana, infra/prometheus):

    http_request_duration_seconds{route}     route = "METHOD /template" (low cardinality)
    ws_request_duration_seconds{method}      WS order-entry method name
    api_errors_total{error}                  every API error answered, by name
    auth_fail_total{reason}                  missing | unknown_key | timestamp | signature |
                                             replay | forbidden
    replay_detect_total
    rate_limit_drops_total{reason,key}       reason = weight | orders | ws_messages; key = API key id
                                             (operator-issued, few) or "-" before logon
    ws_connected_clients{server="trade"}     order-entry sockets open
    ws_close_total{reason}                   order-entry sockets closed, by reason
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# 25 us .. 10 s: an order ack is ~0.3-2 ms (fsync), reads are tens of us.
LATENCY_BUCKETS_S = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3,
                     50e-3, 100e-3, 250e-3, 1.0, 10.0)


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.http_latency = Histogram("http_request_duration_seconds",
                                      "REST request latency by route template", ["route"],
                                      buckets=LATENCY_BUCKETS_S, registry=r)
        self.ws_latency = Histogram("ws_request_duration_seconds",
                                    "WS order-entry request latency by method", ["method"],
                                    buckets=LATENCY_BUCKETS_S, registry=r)
        self.errors = Counter("api_errors", "API errors answered, by name", ["error"], registry=r)
        self.auth_fails = Counter("auth_fail", "authentication failures, by reason", ["reason"],
                                  registry=r)
        self.replays = Counter("replay_detect", "signed requests replayed within their window",
                               registry=r)
        self.drops = Counter("rate_limit_drops", "requests refused by a rate limit",
                             ["reason", "key"], registry=r)
        self.ws_clients = Gauge("ws_connected_clients", "WebSocket clients connected",
                                ["server"], registry=r, multiprocess_mode="livesum")
        self.ws_closes = Counter("ws_close", "WebSocket connections closed, by reason", ["reason"],
                                 registry=r)
        self._http: dict[str, object] = {}
        self._ws: dict[str, object] = {}
        self._err: dict[str, object] = {}

    # AuthObserver
    def auth_fail(self, reason: str) -> None:
        self.auth_fails.labels(reason).inc()

    def replay_detected(self) -> None:
        self.replays.inc()

    def rate_limit_drop(self, key: str, reason: str) -> None:
        self.drops.labels(reason, key).inc()

    def observe_http(self, route: str, seconds: float) -> None:
        h = self._http.get(route)
        if h is None:
            h = self._http[route] = self.http_latency.labels(route)
        h.observe(seconds)  # type: ignore[attr-defined]

    def observe_ws(self, method: str, seconds: float) -> None:
        h = self._ws.get(method)
        if h is None:
            h = self._ws[method] = self.ws_latency.labels(method)
        h.observe(seconds)  # type: ignore[attr-defined]

    def error(self, name: str) -> None:
        c = self._err.get(name)
        if c is None:
            c = self._err[name] = self.errors.labels(name)
        c.inc()  # type: ignore[attr-defined]

    def render(self) -> bytes:
        return generate_latest(self.registry)
