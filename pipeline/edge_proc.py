"""The edge process (``spotx up`` starts ``edge.processes`` of them, SO_REUSEPORT).

One uvloop event loop serves REST (``edge.rest.RestApp`` on ``edge.http``) and WebSocket order
entry (``edge.ws_trade.WsTradeServer``) and talks to the engine through ``pipeline.link.RingGateway``
(its own SPSC rings out, the durable WAL tail in). Market-data REST routes are answered from the
publisher's state when ``edge.market_rest`` exists.

Start-up: attach rings, replay the WAL into the read model, listen, report ready. SIGTERM: stop
listening, fail in-flight requests with ENGINE_UNAVAILABLE (their outcome is in the WAL), exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.wal import WalGapError

log = logging.getLogger("spotx.edge")


def build(cfg: Config, edge_id: int) -> tuple[Any, Any, Any, Any]:
    """(gateway, rest_app, ws_server, metrics) wired for this edge process."""
    from edge.app import ws_options
    from edge.auth import Authenticator, KeyStore, ReplayCache
    from edge.metrics import EdgeMetrics
    from edge.orders import Validator
    from edge.ratelimit import KeyLimiter
    from edge.readmodel import ReadModel
    from edge.service import TradingService
    from edge.ws_trade import WsTradeServer
    from pipeline.link import RingGateway
    from pipeline.stats import Stats
    from pipeline.supervisor import run_dir

    stats = Stats(run_dir(cfg), f"edge-{edge_id}")
    metrics = EdgeMetrics(stats=stats)
    units = Validator(cfg).units_by_id
    readmodel = ReadModel(units, {a.asset_id: a for a in cfg.assets})
    gateway = RingGateway(cfg, edge_id, readmodel)
    service = TradingService(cfg, gateway)
    store = KeyStore(cfg.edge.key_store or str(Path(cfg.data_dir) / "keys.json"))
    auth = Authenticator(store, cfg.edge.recv_window_default_ms, cfg.edge.recv_window_max_ms,
                         ReplayCache(cfg.edge.replay_cache_entries), observer=metrics)
    limiter = KeyLimiter(cfg.edge.orders_per_second, cfg.edge.weight_per_minute,
                         on_drop=getattr(metrics, "rate_limit_drop", None))
    market = _market(cfg)
    gateway.market = market  # fed from the same durable WAL tail as the read model
    from pipeline.smoke import SmokeRestApp

    rest = SmokeRestApp(service, auth, limiter, metrics, market=market, cfg=cfg)
    ws = WsTradeServer(service, auth, limiter, metrics, **ws_options(cfg))
    _warm_wire()
    gateway.dispatcher.progress = ws.write_pending  # a long durable batch's answers leave early
    from edge.ws_trade import METHODS

    metrics.declare(["UNMATCHED", *(r.label for r in rest.routes)], ["?", *METHODS])
    stats.freeze()  # the exporter reads this block: latency per route and per WS method
    return gateway, rest, ws, metrics


def _market(cfg: Config) -> Any:
    """The market-data state for /v1/depth|trades|candles|ticker, derived from durable events by
    the same code as the publisher (``edge.market_state``)."""
    from edge.market_state import MarketState
    from pipeline.publisher.flatbook import warm

    warm()  # its numba kernels compiled (or loaded) now, not at the first live batch
    return MarketState(cfg)


def _warm_wire() -> None:
    """``edge.wire_fast``'s kernel compiled (or loaded) before ready, not at the first order."""
    from edge.wire_fast import warm

    warm()


async def serve(cfg: Config, edge_id: int, ready: Connection | None,
                stop: asyncio.Event) -> None:
    from edge.http import HttpServerState, serve_http
    from pipeline import heap

    gateway, rest, ws, _metrics = build(cfg, edge_id)
    try:
        n = gateway.catch_up()
    except WalGapError as e:  # its snapshot does not fit and the WAL's start is archived
        log.critical("edge-%d cannot rebuild its state: %s", edge_id, e)
        if ready is not None:
            ready.send({"error": f"WalGapError: {e}"})
        raise
    loop = asyncio.get_running_loop()
    gateway.start(loop)
    reuse = cfg.edge.processes > 1
    state = HttpServerState(rest, max_body_bytes=cfg.edge.max_body_bytes)
    http_server, sweeper = await serve_http(state, cfg.edge.host, cfg.edge.rest_port, reuse_port=reuse)
    ws_server = await ws.start(cfg.edge.host, cfg.edge.ws_trade_port, reuse_port=reuse)
    heap.settle()
    from pipeline.native import STATE as native

    log.info("edge-%d ready: REST :%d WS :%d (replayed %d events; modules %s: %s)", edge_id,
             cfg.edge.rest_port, cfg.edge.ws_trade_port, n,
             "compiled" if native["active"] else "interpreted", native["reason"])
    if ready is not None:
        ready.send({"ready": True, "rest_port": cfg.edge.rest_port,
                    "ws_port": cfg.edge.ws_trade_port, "replayed_events": n,
                    "restored_from_seq": gateway.restored_from, "native": native["active"]})
    try:
        await stop.wait()
    finally:
        http_server.close()
        ws_server.close()
        sweeper.cancel()
        gateway.close()
        await ws.drain()


def main(cfg: Config, index: int, ready: Connection) -> None:
    """Process entry (``spotx up``)."""
    import uvloop

    from pipeline.cpu import pin

    logging.basicConfig(level=logging.INFO, format="%(asctime)s edge %(levelname)s %(message)s")
    pin(cfg.edge.core)

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve(cfg, index, ready, stop)

    uvloop.run(run())
