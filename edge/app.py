"""Composition root of one edge: wires auth, limits, service, REST and WS over a gateway.

``build_edge(cfg, gateway)`` gives the parts; ``EdgeServers.start()`` listens (REST on ``edge.http``,
WS order entry on picows) and ``close()`` stops. Used by ``python -m edge --inproc``, by the tests
(ephemeral ports: pass ``rest_port=0, ws_port=0`` and read ``.rest_port`` / ``.ws_port``), and is the
shape ``pipeline/edge_proc.py`` wires for the stack.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.auth import Authenticator, KeyStore, ReplayCache
from edge.gateway import EngineGateway
from edge.http import HttpServerState, serve_http
from edge.metrics import EdgeMetrics
from edge.ratelimit import KeyLimiter
from edge.rest import MarketData, RestApp
from edge.service import TradingService
from edge.ws_trade import WsTradeServer
from pipeline.config import Config


@dataclass
class EdgeServers:
    cfg: Config
    gateway: EngineGateway
    store: KeyStore
    auth: Authenticator
    limiter: KeyLimiter
    metrics: EdgeMetrics
    service: TradingService
    rest: RestApp
    ws: WsTradeServer
    http_state: HttpServerState
    rest_port: int = 0
    ws_port: int = 0
    _servers: list[Any] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, host: str | None = None, rest_port: int | None = None,
                    ws_port: int | None = None, reuse_port: bool = False) -> None:
        e = self.cfg.edge
        host = host or e.host
        http_server, sweeper = await serve_http(
            self.http_state, host, e.rest_port if rest_port is None else rest_port, reuse_port)
        ws_server = await self.ws.start(host, e.ws_trade_port if ws_port is None else ws_port,
                                        reuse_port)
        self._servers = [http_server, ws_server]
        self._tasks = [sweeper]
        self.rest_port = http_server.sockets[0].getsockname()[1]
        self.ws_port = ws_server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for t in self._tasks:
            t.cancel()
        for c in list(self.http_state.conns):
            if c.transport is not None:
                c.transport.close()
        for sess in list(self.ws.sessions.values()):
            if sess.t is not None:
                sess.t.disconnect(graceful=False)
        for s in self._servers:
            await s.wait_closed()
        await self.ws.drain()
        self._servers = []


def ws_options(cfg: Config) -> dict[str, Any]:
    """``WsTradeServer`` keyword arguments from the ``[edge]`` section."""
    e = cfg.edge
    return {"path": e.ws_trade_path, "max_frame_bytes": e.max_frame_bytes,
            "messages_per_second": e.ws_messages_per_second, "max_inflight": e.ws_max_inflight,
            "max_backlog_bytes": e.ws_max_backlog_bytes,
            "logon_timeout_s": float(e.ws_logon_timeout_s)}


def build_edge(cfg: Config, gateway: EngineGateway, store: KeyStore | None = None,
               market: MarketData | None = None, metrics: EdgeMetrics | None = None,
               ws_messages_per_second: int | None = None, **ws_overrides: Any) -> EdgeServers:
    metrics = metrics or EdgeMetrics()
    store = store or KeyStore(cfg.edge.key_store or str(Path(cfg.data_dir) / "keys.json"))
    auth = Authenticator(store, cfg.edge.recv_window_default_ms, cfg.edge.recv_window_max_ms,
                         ReplayCache(cfg.edge.replay_cache_entries), observer=metrics)
    limiter = KeyLimiter(cfg.edge.orders_per_second, cfg.edge.weight_per_minute,
                         on_drop=metrics.rate_limit_drop)
    service = TradingService(cfg, gateway)
    rest = RestApp(service, auth, limiter, metrics, market=market)
    opts = ws_options(cfg)
    if ws_messages_per_second is not None:
        opts["messages_per_second"] = ws_messages_per_second
    ws = WsTradeServer(service, auth, limiter, metrics, **{**opts, **ws_overrides})
    dispatcher = getattr(gateway, "dispatcher", None)  # both gateways have one; test doubles may not
    if dispatcher is not None:
        dispatcher.progress = ws.write_pending  # a long durable batch's answers leave early
    state = HttpServerState(rest, max_body_bytes=cfg.edge.max_body_bytes)
    return EdgeServers(cfg, gateway, store, auth, limiter, metrics, service, rest, ws, state)
