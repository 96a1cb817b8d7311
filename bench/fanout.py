"""Bench suite ``fanout``: market-data fan-out, ring -> ``/v1/ws/market`` -> 1,000 subscribers.

Set-up (all on 127.0.0.1, one temp data dir, one md ring): this process plays the publisher — it
builds TradeExecuted messages with ``orjson`` exactly like ``MarketDeriver`` (one serialisation per
message), packs them into md records (``MdEncoder``), publishes them on the broadcast ring and rings
the fan-outs' doorbells, paced in 1 ms ticks to an offered message rate. ``M`` fan-out processes
are the real ``edge.fanout:main`` (SO_REUSEPORT, pinned: fan-out i on core i % cores). ``C`` client
processes (uvloop, plain sockets: a WebSocket handshake and a masked subscribe frame, then reading)
hold ``subscribers / C`` connections each, all subscribed to ``trades:BTC-USDT``, so every message
becomes 1,000 outbound frames.

Clients do not parse every frame: a numba kernel walks the frame headers of each received chunk
(counting text frames, carrying partial headers and payloads across chunks), and the last complete
frame of each chunk is parsed for its ``timeUs`` (the publish time, CLOCK_REALTIME, shared by all
processes on the host): publish -> receive latency, sampled once per chunk (the newest frame of a
chunk, so the sample favours neither old nor fresh frames in it). Correct = every subscriber received
exactly every message published (no close, no loss) — checked by count and by the last trade id.

Regimes:
* ``fanout.frames_per_s.offered<R>.m<M>`` — offered R messages/s for ``duration`` s: delivered
  outbound frames/s (sum over clients / wall time), p50/p99/p99.9 publish -> receive in us.
* ``fanout.frames_per_cpu_s.offered<R>.m<M>`` — frames delivered per CPU-second of the fan-out
  processes (user + system, from /proc): what one core does, independent of how busy the box is.
* ``fanout.publish_to_send.offered<R>.m<M>`` — the fan-out's own lag metric
  (``md_publish_to_send_seconds``, read from its prometheus multiprocess files): p50 / p99 as the
  upper bounds of the histogram buckets they fall in.

This box has 2 vCPUs shared by the publisher loop, the fan-out(s) and the clients (which do more
work per frame than the fan-out: a recv per chunk vs a send per round). The per-core figure is the
one that says what a dedicated core sustains; the wall-clock figure is bounded by the clients here.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing as mp
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numba
import numpy as np
import orjson

from bench.harness import Latency, Result, pin
from pipeline import config, shm_layout
from pipeline.doorbell import Ringer
from pipeline.publisher.channels import Ctype, chan_id
from pipeline.publisher.process import md_doorbell_dir
from pipeline.publisher.record import MD, MdEncoder, Msg
from ringbuf import BroadcastWriter

CTX = mp.get_context("spawn")
SUBSCRIBERS = 1000
CHANNEL = "trades:BTC-USDT"


# -- client side: frame walking (numba) -------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def walk(buf: np.ndarray, n: int, skip: int) -> tuple[int, int, int, int, int, int, int]:
    """Walk server frames in ``buf[:n]``, ``skip`` payload bytes of a previous frame first.

    Returns (text frames completed, payload bytes still to skip after the chunk, start and length
    of the first complete text frame's payload (-1 if none), the same of the last one, offset of
    an incomplete header (n when none))."""
    i = skip if skip < n else n
    rest = skip - i
    frames = 0
    first = -1
    first_len = 0
    last = -1
    last_len = 0
    while rest == 0 and i < n:
        if i + 2 > n:
            return frames, 0, first, first_len, last, last_len, i
        op = buf[i] & 0x0F
        ln = buf[i + 1] & 0x7F
        h = 2
        if ln == 126:
            if i + 4 > n:
                return frames, 0, first, first_len, last, last_len, i
            ln = (np.int64(buf[i + 2]) << 8) | buf[i + 3]
            h = 4
        elif ln == 127:
            if i + 10 > n:
                return frames, 0, first, first_len, last, last_len, i
            ln = 0
            for k in range(8):
                ln = (ln << 8) | np.int64(buf[i + 2 + k])
            h = 10
        start = i + h
        end = start + ln
        if end <= n:
            if op == 1:
                frames += 1
                if first < 0:
                    first = start
                    first_len = ln
                last = start
                last_len = ln
            i = end
        else:
            rest = end - n
            i = n
    return frames, rest, first, first_len, last, last_len, n


class _Conn(asyncio.Protocol):
    def __init__(self, stats: dict[str, Any]) -> None:
        self.st = stats
        self.skip = 0
        self.carry = b""
        self.hs = True
        self.hbuf = b""
        self.tr: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.acked = asyncio.get_running_loop().create_future()  # the subscribe answer arrived
        self.last_id = 0
        self.closed = False
        self.frames = 0  # text frames received (the subscribe answer included)

    def connection_made(self, transport: Any) -> None:
        self.tr = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /v1/ws/market HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.st["closed"] += 1

    def data_received(self, data: bytes) -> None:
        if self.hs:
            self.hbuf += data
            end = self.hbuf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.hs = False
            data = self.hbuf[end + 4:]
            self._send({"op": "subscribe", "id": 1, "channels": [CHANNEL]})
            self.ready.set_result(True)
            if not data:
                return
        if self.carry:
            data = self.carry + data
            self.carry = b""
        buf = np.frombuffer(data, np.uint8)
        frames, self.skip, first, first_len, last, ln, tail = walk(buf, len(data), self.skip)
        st = self.st
        self.frames += frames
        if frames and not self.acked.done():
            self.acked.set_result(True)
        st["bytes"] += len(data)
        if tail < len(data):
            self.carry = data[tail:]
        if last >= 0:
            now_us = time.time_ns() // 1000
            for a, b in ((first, first_len), (last, ln)) if first != last else ((last, ln),):
                payload = data[a:a + b]
                j = payload.find(b'"timeUs":')
                if j >= 0:
                    st["lat"].append(now_us - int(payload[j + 9:payload.find(b",", j)]))
            t = payload.find(b'"tradeId":')
            if t >= 0:
                self.last_id = int(payload[t + 10:payload.find(b",", t)])

    def _send(self, obj: Any) -> None:
        p = orjson.dumps(obj)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(p))
        assert self.tr is not None and len(p) < 126
        self.tr.write(bytes((0x81, 0x80 | len(p))) + mask + masked)


def _client(port: int, n: int, core: int, conn: Connection) -> None:
    import uvloop

    pin(core)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        st: dict[str, Any] = {"bytes": 0, "lat": [], "closed": 0}
        conns: list[_Conn] = []
        for _ in range(n):
            _t, p = await loop.create_connection(lambda: _Conn(st), "127.0.0.1", port)
            conns.append(p)
        await asyncio.wait_for(asyncio.gather(*(c.acked for c in conns)), 30)
        base = [c.frames for c in conns]
        st["bytes"] = 0
        st["lat"] = []
        conn.send("subscribed")
        got = asyncio.Event()
        loop.add_reader(conn.fileno(), got.set)
        await got.wait()
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking; the report is big
        conn.recv()  # "drain": wait until nothing arrived for 0.3 s (at most 10 s)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            before = st["bytes"]
            await asyncio.sleep(0.3)
            if st["bytes"] == before:
                break
        ids = [c.last_id for c in conns]
        lat = np.array(st["lat"], np.int64)
        if len(lat) > 100_000:
            lat = np.random.default_rng(0).choice(lat, 100_000, replace=False)
        got_frames = [c.frames - b for c, b in zip(conns, base, strict=True)]
        conn.send({"frames": sum(got_frames), "bytes": st["bytes"], "closed": st["closed"],
                   "short": sum(1 for g in got_frames if g != max(got_frames)),
                   "lat": lat.tobytes(), "min_id": min(ids), "max_id": max(ids)})
        for c in conns:
            if c.tr is not None:
                c.tr.close()

    uvloop.run(main())


# -- fan-out processes ---------------------------------------------------------------------------

def _fanout(cfg: config.Config, index: int, ready: Connection) -> None:
    import edge.fanout

    edge.fanout.main(cfg, index, ready)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _lag_quantiles(prom_dir: str) -> tuple[float | None, float | None]:
    """p50 / p99 (bucket upper bounds, us) of the fan-outs' md_publish_to_send_seconds."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    reg = CollectorRegistry()
    MultiProcessCollector(reg, prom_dir)
    buckets: list[tuple[float, float]] = []
    for fam in reg.collect():
        if fam.name == "md_publish_to_send_seconds":
            buckets = sorted((float(s.labels["le"]), s.value) for s in fam.samples
                             if s.name.endswith("_bucket"))
    if not buckets or buckets[-1][1] == 0:
        return None, None
    total = buckets[-1][1]

    def q(f: float) -> float:
        return next(le for le, c in buckets if c >= f * total) * 1e6

    return q(0.5), q(0.99)


def _one(offered: int, fanouts: int, clients: int, duration: float) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="spotx-bench-fanout-")
    prom = os.path.join(tmp, "prom")
    os.makedirs(prom)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom  # the spawned fan-outs write their metrics there
    affinity = os.sched_getaffinity(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config.load(env={}, overrides={"data_dir": tmp, "instance": f"bench{os.getpid()}",
                                         "market.port": port, "market.processes": fanouts,
                                         "market.core": 1, "market.broadcast_capacity": 1 << 16})
    ring = BroadcastWriter.create(shm_layout.md_ring(cfg), MD, cfg.market.broadcast_capacity,
                                  replace_stale=True)
    ringer = Ringer(md_doorbell_dir(Path(tmp) / "run"))
    procs: list[Any] = []
    pipes: list[Connection] = []
    try:
        for i in range(1, fanouts + 1):
            a, b = CTX.Pipe(duplex=False)
            p = CTX.Process(target=_fanout, args=(cfg, i, b), daemon=True)
            p.start()
            if not a.poll(60) or not a.recv().get("ready"):
                raise RuntimeError("fan-out did not start")
            procs.append(p)
        fan_pids = [p.pid for p in procs]
        per = SUBSCRIBERS // clients
        for i in range(clients):
            a, b = CTX.Pipe()
            p = CTX.Process(target=_client, args=(port, per, i % (os.cpu_count() or 1), b),
                            daemon=True)
            p.start()
            procs.append(p)
            pipes.append(a)
        for a in pipes:
            if not a.poll(60) or a.recv() != "subscribed":
                raise RuntimeError("client did not subscribe")
        pin(0)
        enc = MdEncoder(ring.publish)
        chan = chan_id(Ctype.TRADES, 1)
        cpu0 = sum(_cpu_s(p) for p in fan_pids)
        t0 = time.perf_counter()
        tick = 0.001
        per_tick = offered * tick
        sent = 0
        owed = 0.0
        next_t = t0
        while True:
            now = time.perf_counter()
            if now - t0 >= duration:
                break
            owed += per_tick
            k = int(owed)
            owed -= k
            ts_us = time.time_ns() // 1000
            for _ in range(k):
                sent += 1
                enc.add(Msg.TRADE, chan, sent, sent, orjson.dumps({
                    "type": "TradeExecuted", "symbol": "BTC-USDT", "tradeId": sent,
                    "price": "100.25", "qty": "0.5000", "quoteQty": "50.125000",
                    "takerSide": "BUY", "time": ts_us // 1000, "timeUs": ts_us, "seq": sent}),
                    ts_us * 1000)
            if enc.flush():
                ringer.ring()
            next_t += tick
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        wall = time.perf_counter() - t0
        for a in pipes:
            a.send("drain")
        reports = [a.recv() for a in pipes]
        cpu = sum(_cpu_s(p) for p in fan_pids) - cpu0
    finally:
        os.sched_setaffinity(0, affinity)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        ringer.close()
        ring.unlink()
        ring.close()
        lag50, lag99 = _lag_quantiles(prom)
        shutil.rmtree(tmp, ignore_errors=True)
    lat = Latency()
    for r in reports:
        lat.record_many(np.frombuffer(r["lat"], np.int64) * 1000)
    frames = sum(r["frames"] for r in reports)
    ok = all(r["closed"] == 0 and r["min_id"] == sent and r["short"] == 0 for r in reports) \
        and frames == sent * per * clients
    return {"sent": sent, "frames": frames, "wall": wall, "cpu": cpu, "lat": lat, "ok": ok,
            "closed": sum(r["closed"] for r in reports), "lag50": lag50, "lag99": lag99}


def publisher(n: int) -> list[Result]:
    """The publisher's own rate (the source of every fan-out frame), its real code path: a WAL of
    ``n`` realistic-mix commands (bench recovery's writer) read by ``Publisher`` twice — the silent
    rebuild at start (derive only), then live: derive + serialise + publish to the md ring, frame
    by frame (``step``), with the WAL appended after the publisher started."""
    from bench import recovery
    from bench.engine_wal import deposits, mix
    from pipeline.engine_proc import EngineHost
    from pipeline.publisher.process import Publisher

    data = recovery._tmp()
    out: list[Result] = []
    try:
        cfg = recovery._cfg(data, 1 << 40)
        host = EngineHost(cfg, attach_rings=False)
        host.sequence(deposits())
        host.writer.sync()
        ring = f"spotx-bench-md-{os.getpid()}"
        pub = Publisher(cfg, ring_name=ring, capacity=1 << 16, stats=False)
        try:
            pub.start()
            cmds = mix(n, host.next_seq)
            for i in range(0, n, 256):
                host.sequence(cmds[i:i + 256])
            host.writer.sync()
            last = host.next_seq - 1
            ev0, t0 = pub.events, time.perf_counter()
            while pub.deriver.seq < last:
                if not pub.step():
                    break
            live_s = time.perf_counter() - t0
            live_events, live_ok = pub.events - ev0, pub.deriver.seq == last
            published = pub.writer.published() if pub.writer is not None else 0
        finally:
            pub.close()
            host.close()
        pub2 = Publisher(cfg, ring_name=ring + "-r", capacity=1 << 16, stats=False)
        try:
            t0 = time.perf_counter()
            pub2.start()
            rebuild_s = time.perf_counter() - t0
            rebuild_events, rebuild_ok = pub2.events, pub2.deriver.seq == last
        finally:
            pub2.close()
        out.append(Result(f"fanout.publisher.live.{n // 1000}k", "events/s",
                          round(live_events / live_s), correct=live_ok and rebuild_ok,
                          notes=f"{live_events:,} events of {n:,} commands derived (book deltas "
                                f"+ checksums, trades, candles) and published as {published:,} md "
                                f"records in {live_s:.2f} s = {n / live_s:,.0f} commands/s; peer: "
                                f"the silent rebuild (derive only)").with_peer(
            "rebuild events/s (derive only)", round(rebuild_events / rebuild_s)))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return out


def run(quick: bool) -> list[Result]:
    duration = 3.0 if quick else 10.0
    regimes = [(200, 1), (1000, 1), (2000, 1), (1000, 2)] if quick else \
        [(200, 1), (500, 1), (1000, 1), (2000, 1), (4000, 1), (1000, 2), (2000, 2)]
    out: list[Result] = []
    for offered, m in regimes:
        r = _one(offered, m, clients=4, duration=duration)
        p50, p99, p999 = r["lat"].summary_us()
        fps = r["frames"] / r["wall"]
        note = (f"offered {offered} msg/s x {SUBSCRIBERS} subs; sent {r['sent']}; "
                f"fan-out cpu {r['cpu']:.2f} s over {r['wall']:.1f} s; closed {r['closed']}")
        out.append(Result(f"fanout.frames_per_s.offered{offered}.m{m}", "frames/s", round(fps),
                          p50, p99, p999, correct=r["ok"], notes=note + "; latency in us"))
        out.append(Result(f"fanout.frames_per_cpu_s.offered{offered}.m{m}", "frames/cpu-s",
                          round(r["frames"] / r["cpu"]) if r["cpu"] > 0 else None,
                          correct=r["ok"], notes="frames delivered per CPU-second of the fan-out "
                                                 "process(es)"))
        out.append(Result(f"fanout.publish_to_send.offered{offered}.m{m}", "us", r["lag50"],
                          r["lag50"], r["lag99"], None, correct=r["ok"],
                          notes="fan-out side: md publish -> handed to the sockets, oldest message "
                                "of each round; bucket upper bounds of md_publish_to_send_seconds"))
    out += publisher(200_000 if quick else 1_000_000)
    return out
