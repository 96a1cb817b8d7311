"""kill -9 the engine process under load, many times: nothing reported durable is lost, and the
recovered state hash equals a clean replay of the WAL from seq 1 (DESIGN.md §4/§5)."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import config
from pipeline.engine_proc import EngineHost, wal_path
from pipeline.records import COMMAND, Cmd, OrdType, Side, Stp, Tif

CTX = mp.get_context("spawn")
ROUNDS = 6


def _cfg(data: str) -> config.Config:
    return config.load(env={"SPOTX_DATA_DIR": data, "SPOTX_ENGINE_MAX_ORDERS": "65536",
                            "SPOTX_ENGINE_WAL_SEGMENT_BYTES": str(1 << 20),
                            "SPOTX_ENGINE_SNAPSHOT_EVERY": "3000"})


def _batch(rng: random.Random, n: int) -> np.ndarray:
    """Deposits, resting orders around 1000.00 on both sides, crossing takers and cancels."""
    c = np.zeros(n, COMMAND)
    for i in range(n):
        r = rng.random()
        acct = rng.randint(10, 14)
        if r < 0.1:
            c[i]["kind"], c[i]["account"], c[i]["asset"] = Cmd.DEPOSIT, acct, rng.choice((1, 2))
            c[i]["amount"] = 10**12 if c[i]["asset"] == 1 else 10**9
        elif r < 0.85:
            c[i]["kind"], c[i]["account"], c[i]["symbol"] = Cmd.NEW_ORDER, acct, 1
            c[i]["side"] = rng.choice((Side.BUY, Side.SELL))
            c[i]["otype"], c[i]["stp"] = OrdType.LIMIT, Stp.NONE
            c[i]["tif"] = Tif.GTC if rng.random() < 0.8 else Tif.IOC
            c[i]["price"] = 100_000 + rng.randint(-50, 50)
            c[i]["qty"] = rng.randint(1, 50)
        else:
            c[i]["kind"], c[i]["account"], c[i]["symbol"] = Cmd.CANCEL_ALL, acct, 1
            c[i]["scope"] = 3
    return c


def _engine_child(data: str, seed: int, conn: object) -> None:
    host = EngineHost(_cfg(data), attach_rings=False)
    rng = random.Random(seed)
    while True:  # killed by the parent
        host.sequence(_batch(rng, rng.randint(1, 64)))
        d = host.committer.durable_seq
        conn.send(d)  # type: ignore[attr-defined]
        time.sleep(rng.random() * 0.002)


@pytest.mark.timeout(240)
def test_kill_9_under_load_loses_nothing_durable(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    reported = 0
    for rnd in range(ROUNDS):
        parent, child = CTX.Pipe(duplex=False)
        p = CTX.Process(target=_engine_child, args=(data, 1000 + rnd, child))
        p.start()
        child.close()
        deadline = time.monotonic() + 60
        got = 0
        kill_after = random.Random(rnd).randint(20, 120)
        while got < kill_after and time.monotonic() < deadline:
            if parent.poll(0.5):
                reported = max(reported, int(parent.recv()))
                got += 1
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        while parent.poll(0):  # durable reports sent before the kill
            try:
                reported = max(reported, int(parent.recv()))
            except EOFError:
                break
        assert got > 0, f"round {rnd}: the engine child never reported"
        host = EngineHost(_cfg(data), attach_rings=False)  # recovery: snapshot + replay + compare
        try:
            assert host.next_seq - 1 >= reported, (
                f"round {rnd}: seq {reported} was reported durable but recovery ends at "
                f"{host.next_seq - 1}")
            recovered_hash = host.engine.state_hash()
            recovered_seq = host.engine.seq
        finally:
            host.close()
        assert recovered_hash == _clean_replay_hash(data, recovered_seq)


def _clean_replay_hash(data: str, upto: int) -> int:
    from engine.engine import Engine
    from pipeline.wal import FrameKind, WalReader

    eng = Engine(_cfg(data))
    reader = WalReader(wal_path(_cfg(data)))
    try:
        for f in reader.iter_frames(1):
            if f.kind == FrameKind.COMMANDS and f.first_seq <= upto:
                eng.apply(np.frombuffer(f.payload, COMMAND).copy(), f.ts_ns)
    finally:
        reader.close()
    assert eng.seq == upto
    return eng.state_hash()
