"""The edge process's Prometheus metrics (prometheus_client objects; RUNBOOK §2, DESIGN.md §11).

Latency histograms (one observation per request: the hot path) live in a ``pipeline.stats`` block:
an int64 store and a bisect per request, no lock, no ``getpid`` (prometheus_client's multiprocess
values cost ~1 us per update and were 7 % of an edge's CPU at load, py-spy). In the stack the block is
the edge's ``stats-edge-<n>.bin`` file (frozen by ``pipeline.edge_proc`` once the routes are known;
a label first seen after that is counted under ``other``), read by the exporter; elsewhere it is
in-process memory rendered through this registry. Buckets: ``pipeline.stats.BUCKETS_NS``.

Everything else (errors, auth failures, drops, clients) is rare and stays in prometheus_client:
in the stack the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at ``<run_dir>/prom/`` before it
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

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from pipeline.exporter import LocalStatsCollector
from pipeline.stats import Stats, observe

HTTP_LATENCY = ("http_request_duration_seconds", "REST request latency by route template")
WS_LATENCY = ("ws_request_duration_seconds", "WS order-entry request latency by method")
OTHER = "other"


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, stats: Stats | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        if stats is None:  # not in a stack: an in-memory block, rendered by this registry
            stats = Stats("/nonexistent", "edge-local")
            r.register(LocalStatsCollector(stats))
        self.stats = stats
        self._http: dict[str, int] = {}
        self._ws: dict[str, int] = {}
        self.declare([OTHER], [OTHER])
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
        self._err: dict[str, object] = {}

    def declare(self, routes: list[str], methods: list[str]) -> None:
        """Latency slots for these labels (before the block is frozen)."""
        for route in routes:
            self._slot(self._http, HTTP_LATENCY, route, route=route)
        for method in methods:
            self._slot(self._ws, WS_LATENCY, method, method=method)

    def _slot(self, table: dict[str, int], spec: tuple[str, str], label: str, **kv: str) -> int:
        """The latency slot of ``label`` (declared now if the block is not frozen yet)."""
        if self.stats.frozen:
            return table[OTHER]
        off = table[label] = self.stats.slot(spec[0], "histogram", spec[1], **kv)
        return off

    # AuthObserver
    def auth_fail(self, reason: str) -> None:
        self.auth_fails.labels(reason).inc()

    def replay_detected(self) -> None:
        self.replays.inc()

    def rate_limit_drop(self, key: str, reason: str) -> None:
        self.drops.labels(reason, key).inc()

    def observe_http(self, route: str, seconds: float) -> None:
        off = self._http.get(route)
        if off is None:
            off = self._slot(self._http, HTTP_LATENCY, route, route=route)
        self._record(off, seconds)

    @property
    def ws_slots(self) -> dict[str, int]:
        """method -> its latency slot (the live table: labels declared later appear in it)."""
        return self._ws

    def observe_ws(self, method: str, seconds: float) -> None:
        off = self._ws.get(method)
        if off is None:
            off = self._slot(self._ws, WS_LATENCY, method, method=method)
        self._record(off, seconds)

    def _record(self, off: int, seconds: float) -> None:
        observe(self.stats.words, off, int(seconds * 1e9))

    def error(self, name: str) -> None:
        c = self._err.get(name)
        if c is None:
            c = self._err[name] = self.errors.labels(name)
        c.inc()  # type: ignore[attr-defined]

    def render(self) -> bytes:
        return generate_latest(self.registry)
