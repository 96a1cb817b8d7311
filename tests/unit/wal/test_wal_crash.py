"""Real crashes and real cross-process readers.

* A writer process appending random frames is SIGKILLed at random moments, over and over; it
  reports a seq as durable (through a pipe) only after ``wait_durable`` returned. After each kill:
  every reported seq is there with its exact bytes, nothing of the torn tail is left, and the next
  writer continues the log and its hash chain.
* A tailer in another process never sees a frame before it is durable.
"""

from __future__ import annotations

import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wal_payloads import append_batches, check_log, commands_payload, events_payload

from pipeline.wal import FrameKind, GroupCommitter, WalWriter, recover, verify_chain

CHILD = str(Path(__file__).with_name("_child.py"))
ROUNDS = 10  # per seal mode
SEG = 64 << 10


def _read_lines_until(p: subprocess.Popen, deadline: float) -> list[str]:
    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    lines = []
    try:
        while (left := deadline - time.monotonic()) > 0:
            if sel.select(left):
                line = p.stdout.readline()
                if not line:
                    break
                lines.append(line)
    finally:
        sel.close()
    return lines


def _tail_is_zero(d: Path, segno: int, offset: int) -> bool:
    (path,) = d.glob(f"wal-{segno:010d}-*.seg")
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().strip(b"\0") == b""


@pytest.mark.parametrize("seal", ["flusher", "append"])
def test_kill9_mid_stream_never_loses_a_durable_seq(tmp_path, seal: str) -> None:
    rng = random.Random(20240611)
    d = tmp_path / "wal"
    reported = 0
    kills_with_torn_bytes = 0
    for rnd in range(ROUNDS):
        p = subprocess.Popen([sys.executable, CHILD, "stream", str(d), str(rng.randrange(1 << 30)),
                              str(SEG), seal], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None
            first = p.stdout.readline()  # "R <last seq>" once the child recovered the log
            tag, last = first.split()
            assert tag == "R" and int(last) >= reported, (rnd, first, reported)
            lines = _read_lines_until(p, time.monotonic() + rng.uniform(0.05, 0.35))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        assert p.stdout is not None
        lines += p.stdout.readlines()  # what it wrote before it died
        p.stdout.close()
        for line in lines:
            tag, seq = line.split()
            assert tag == "D"
            reported = max(reported, int(seq))
        res = recover(d)
        kills_with_torn_bytes += res.truncated_bytes > 0
        assert res.last_seq >= reported, (rnd, res, reported)
        assert _tail_is_zero(d, res.segno, res.offset)
        check_log(d, res.last_seq)
    assert reported > 1000, kills_with_torn_bytes  # the children did real work
    with WalWriter(d, segment_bytes=SEG, fencing_token=7) as w:  # and the log goes on
        last = append_batches(w, 20)
    check_log(d, last)
    rep = verify_chain(d)
    assert rep.ok, (rep.errors, [(s.segno, s.errors) for s in rep.segments if s.errors])
    assert len(rep.segments) > ROUNDS  # rotations happened along the way


def _ask(p: subprocess.Popen, cmd: str) -> list[int]:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(cmd + "\n")
    p.stdin.flush()
    line = p.stdout.readline()
    assert line.startswith("T "), line
    return [int(x) for x in line.split()[1:]]


@pytest.mark.parametrize("seal", ["flusher", "append"])
def test_a_tailer_in_another_process_stays_behind_the_durable_watermark(tmp_path, seal) -> None:
    w = WalWriter(tmp_path, segment_bytes=8 << 10, seal=seal)
    p = subprocess.Popen([sys.executable, CHILD, "tail", str(tmp_path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert _ask(p, "poll") == [0, 0, 0]
        last = append_batches(w, 10)
        assert _ask(p, "poll") == [0, 0, 0]  # appended, not durable
        w.sync()
        assert _ask(p, "poll") == [20, last, last]
        more = append_batches(w, 100)  # across rotations, unsynced
        assert _ask(p, "poll") == [20, last, last]
        w.sync()
        assert _ask(p, "poll") == [220, more, more]

        # Concurrent: group commit running while the tailer polls.
        gc = GroupCommitter(w)
        seq = more + 1
        behind = 0
        t_end = time.monotonic() + 0.8
        while time.monotonic() < t_end:
            for _ in range(8):
                n = 1 + seq % 13
                w.append(FrameKind.COMMANDS, seq, n, commands_payload(seq, n), seq)
                w.append(FrameKind.EVENTS, seq, n, events_payload(seq, 96), seq)
                seq += n
            gc.request_sync()
            _frames, seen, _dp = _ask(p, "poll")
            assert seen <= w.durable_seq  # read after the answer: it never saw past durable
            behind += seen < seq - 1
        assert behind > 0  # there was something non-durable to (not) see
        gc.close()
        assert _ask(p, "poll")[1] == seq - 1
    finally:
        if p.stdin is not None:
            p.stdin.write("quit\n")
            p.stdin.close()
        p.wait(10)
        if p.stdout is not None:
            p.stdout.close()
        w.close()
