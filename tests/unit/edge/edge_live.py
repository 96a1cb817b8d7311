"""Test helper: a live edge (REST + WS on ephemeral ports) over the in-process engine, run in a
server thread on an asyncio or uvloop loop, and client-side request signing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.auth import ApiKey, KeyStore, rest_payload, sign
from pipeline import config as config_mod

_warmed: list[bool] = []
TEST_OVERRIDES = {"engine.max_orders": 1 << 14, "engine.max_accounts": 256,
                  "engine.max_levels": 1 << 10}


@dataclass
class LiveEdge:
    loop: asyncio.AbstractEventLoop
    edge: Any
    gateway: Any
    keys: dict[str, ApiKey]
    cfg: Any

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.edge.rest_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.edge.ws_port}{self.cfg.edge.ws_trade_path}"

    def __repr__(self) -> str:
        return f"LiveEdge(rest={self.edge.rest_port}, ws={self.edge.ws_port})"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop thread and return its result."""
        async def wrap() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def state(self) -> tuple[int, int]:
        return self.call(lambda: (self.gateway.state_hash(), self.gateway.seq))


def start_live_edge(tmp_path: Path, loop_impl: str, overrides: dict[str, Any] | None = None,
                    **ws_options: Any) -> tuple[LiveEdge, Callable[[], None]]:
    from edge.app import build_edge
    from edge.inproc import InprocGateway

    cfg = config_mod.load(env={}, overrides={**TEST_OVERRIDES, "data_dir": str(tmp_path),
                                             "edge.key_store": str(tmp_path / "keys.json"),
                                             **(overrides or {})})
    store = KeyStore(cfg.edge.key_store)
    keys = {"trade": store.create(11, "trade"), "trade2": store.create(12, "trade"),
            "read": store.create(11, "read"), "admin": store.create(1, "admin")}
    import engine
    from engine import Engine

    if not _warmed:  # compile (or load from numba's cache) before any request can time out on it
        engine.warm()
        _warmed.append(True)

    loop: asyncio.AbstractEventLoop
    if loop_impl == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    holder: dict[str, Any] = {}
    started = threading.Event()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            gw = InprocGateway(cfg, engine=Engine(cfg))
            edge = build_edge(cfg, gw, store=store, **ws_options)
            await edge.start(host="127.0.0.1", rest_port=0, ws_port=0)
            holder.update(gw=gw, edge=edge)
        try:
            loop.run_until_complete(boot())
        finally:
            started.set()
        loop.run_forever()

    th = threading.Thread(target=thread_main, name="edge-under-test", daemon=True)
    th.start()
    started.wait(60)
    if "edge" not in holder:
        raise RuntimeError("edge under test failed to start")
    live = LiveEdge(loop, holder["edge"], holder["gw"], keys, cfg)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(live.edge.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
        loop.close()
    return live, stop


_last_ts = [0]


def signed_headers(key: ApiKey, method: str, target: str, body: bytes = b"",
                   ts: int | None = None, window: int | None = None) -> dict[str, str]:
    if ts is None:  # unique per request: an identical request signed in the same ms is a replay
        ts = max(time.time_ns() // 1_000_000, _last_ts[0] + 1)
        _last_ts[0] = ts
    h = {"X-API-KEY": key.key_id, "X-TIMESTAMP": str(ts),
         "X-SIGNATURE": sign(key.secret, rest_payload(ts, method, target, body))}
    if window is not None:
        h["X-RECV-WINDOW"] = str(window)
    return h


class _Tap:
    """An EventFeed that records what the dispatcher feeds, then feeds the read model."""

    def __init__(self, inner: Any, seen: list[Any]) -> None:
        self.inner = inner
        self.seen = seen

    def apply(self, evs: list[Any], *rows: Any) -> None:
        self.seen.extend(evs)
        self.inner.apply(evs, *rows)


def tap_events(live: LiveEdge) -> list[Any]:
    """Every event the live edge's dispatcher is fed from now on (the engine's output, decoded)."""
    seen: list[Any] = []
    d = live.edge.gateway.dispatcher  # type: ignore[attr-defined]
    d.readmodel = _Tap(d.readmodel, seen)
    return seen
