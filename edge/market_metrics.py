"""Metrics of the market-data fan-out (prometheus_client; multiprocess files in the stack, as the
edge's metrics — see edge/metrics.py). Updated once per pump round or once a second, never per
frame per subscriber.

    ws_connected_clients{server="market"}       sockets open (livesum over fan-out processes)
    ws_messages_sent_total{server="market"}     outbound frames (data + responses)
    ws_sent_bytes_total{server="market"}        outbound bytes (frames, headers included)
    ws_close_total{reason}                      closes: SLOW_CONSUMER | PING_TIMEOUT | RATE_LIMITED |
                                                CLIENT_CLOSE | DISCONNECT (peer vanished, or picows
                                                closed it: bad or oversize frame) | SERVER_SHUTDOWN
    ws_backlog_bytes                            per-connection unsent bytes (transport buffer +
                                                conflation queues), sampled every second (histogram)
    ws_backlogged_connections                   connections currently in conflation mode (gauge)
    md_publish_to_send_seconds                  publisher write -> handed to the sockets, oldest
                                                message of each round (histogram)
    md_conflated_total{kind}                    messages merged away under backlog (book | candle |
                                                ticker)
    md_fanout_laps_total                        broadcast-ring overruns (resync from snapshots)
    md_book_resyncs_total                       book channels that lost their chain (lap or gap)
                                                and waited for a snapshot
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LAG_BUCKETS_S = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3,
                 100e-3, 250e-3, 1.0, 10.0)
BACKLOG_BUCKETS = (0, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20, 64 << 20)
CLOSE_REASONS = ("SLOW_CONSUMER", "PING_TIMEOUT", "RATE_LIMITED", "CLIENT_CLOSE", "DISCONNECT",
                 "SERVER_SHUTDOWN")


class FanoutMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.clients = Gauge("ws_connected_clients", "WebSocket clients connected", ["server"],
                             registry=r, multiprocess_mode="livesum").labels("market")
        self.sent = Counter("ws_messages_sent", "WebSocket frames sent", ["server"],
                            registry=r).labels("market")
        self.sent_bytes = Counter("ws_sent_bytes", "WebSocket bytes sent", ["server"],
                                  registry=r).labels("market")
        closes = Counter("ws_close", "WebSocket connections closed, by reason", ["reason"],
                         registry=r)
        self.closes = {k: closes.labels(k) for k in CLOSE_REASONS}
        self.backlog = Histogram("ws_backlog_bytes", "unsent bytes per connection, sampled each "
                                 "second", buckets=BACKLOG_BUCKETS, registry=r)
        self.backlogged = Gauge("ws_backlogged_connections", "connections in conflation mode",
                                registry=r, multiprocess_mode="livesum")
        self.lag = Histogram("md_publish_to_send_seconds", "md publish -> handed to the sockets",
                             buckets=LAG_BUCKETS_S, registry=r)
        conflated = Counter("md_conflated", "messages merged away under backlog", ["kind"],
                            registry=r)
        self.conflated = {k: conflated.labels(k) for k in ("book", "candle", "ticker")}
        self.laps = Counter("md_fanout_laps", "broadcast ring overruns", registry=r)
        self.resyncs = Counter("md_book_resyncs", "book channels that waited for a snapshot",
                               registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
