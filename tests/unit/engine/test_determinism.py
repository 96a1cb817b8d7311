"""Determinism across processes: the same commands give the same events and state hash, bit for
bit, in separate interpreters with different hash seeds (no dict order, clock or randomness)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from engine_helpers import FUNDS

from engine import Engine
from engine.testing import funding, random_commands, small_config

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import hashlib, sys
sys.path.insert(0, {here!r})
from engine_helpers import FUNDS
from engine import Engine
from engine.testing import funding, random_commands, small_config
eng = Engine(small_config())
a = eng.apply(funding(range(3, 8), FUNDS), ts_ns=1)
b = eng.apply(random_commands(5, 2000, first_seq=16), ts_ns=2)
print(hashlib.sha256(a.tobytes() + b.tobytes()).hexdigest(), eng.state_hash())
"""


def _here() -> tuple[str, int]:
    eng = Engine(small_config())
    a = eng.apply(funding(range(3, 8), FUNDS), ts_ns=1)
    b = eng.apply(random_commands(5, 2000, first_seq=16), ts_ns=2)
    return hashlib.sha256(a.tobytes() + b.tobytes()).hexdigest(), eng.state_hash()


def test_two_processes_produce_identical_events_and_hash() -> None:
    code = SCRIPT.format(here=str(Path(__file__).parent))
    outs = []
    for seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120, check=True)
        digest, h = r.stdout.split()
        outs.append((digest, int(h)))
    assert outs[0] == outs[1] == _here()
