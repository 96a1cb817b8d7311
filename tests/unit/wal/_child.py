"""Helper processes for the WAL crash and cross-process tests (run as a script, never imported by
pytest as a test module).

    _child.py stream DIR SEED SEGMENT_BYTES SEAL
        append random frames forever; after every sync print "D <durable seq>" (only once
        wait_durable returned)
    _child.py hang DIR SEGMENT_BYTES N
        (seal="flusher") append+sync N COMMANDS frames, print "D <seq>", then append one more and
        hang inside its fdatasync, after the flusher sealed it
    _child.py tail DIR
        read commands on stdin: "poll" -> "T <frames> <last seq> <durable seq after poll>", "quit"
    _child.py full DIR SEGMENT_BYTES LIMIT
        append + sync COMMANDS frames ("D <durable seq>" after each sync) while no file may grow
        past LIMIT bytes (RLIMIT_FSIZE, set after the first sync: the disk "fills up"), until the
        writer raises: "X <exception class> <errno> <durable seq> <last appended seq>"; then one
        more append: "A <exception class>"; then exit without closing (as the engine would)
"""

from __future__ import annotations

import os
import random
import sys
import time

from wal_payloads import commands_payload, events_payload

from pipeline.wal import FrameKind, GroupCommitter, WalReader, WalWriter


def stream(directory: str, seed: int, segment_bytes: int, seal: str) -> None:
    rng = random.Random(seed)
    w = WalWriter(directory, segment_bytes=segment_bytes, fencing_token=7, seal=seal)
    gc = GroupCommitter(w)
    print(f"R {w.last_seq}", flush=True)
    seq = w.last_seq + 1
    while True:
        for _ in range(rng.randint(1, 6)):
            n = rng.randint(1, 40)
            w.append(FrameKind.COMMANDS, seq, n, commands_payload(seq, n), time.time_ns())
            w.append(FrameKind.EVENTS, seq, n, events_payload(seq, rng.randint(0, 700)),
                     time.time_ns())
            seq += n
        gc.request_sync()
        if rng.random() < 0.7:
            gc.wait_durable(seq - 1, 10.0)
            print(f"D {gc.durable_seq}", flush=True)


def hang(directory: str, segment_bytes: int, n: int) -> None:
    w = WalWriter(directory, segment_bytes=segment_bytes, fencing_token=1, seal="flusher")
    seq = 1
    for _ in range(n):
        w.append(FrameKind.COMMANDS, seq, 4, commands_payload(seq, 4), 1)
        seq += 4
        w.sync()
    print(f"D {w.durable_seq}", flush=True)
    w.append(FrameKind.COMMANDS, seq, 4, commands_payload(seq, 4), 1)

    def hung(fd: int) -> None:  # the crash comes while this sync is in flight
        print("H", flush=True)
        time.sleep(600)

    os.fdatasync = hung
    w.sync()


def full(directory: str, segment_bytes: int, limit: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    w = WalWriter(directory, segment_bytes=segment_bytes, fencing_token=1)
    seq = 1
    try:
        while seq < 50 * segment_bytes // 640:  # bounded: ~50 segments if the limit never bites
            w.append(FrameKind.COMMANDS, seq, 40, commands_payload(seq, 40), time.time_ns())
            seq += 40
            w.sync()
            print(f"D {w.durable_seq}", flush=True)
            if seq == 41:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        print("E the limit never stopped the writer", flush=True)
        os._exit(1)
    except OSError as e:  # WalError is one too
        print(f"X {type(e).__name__} {e.errno} {w.durable_seq} {w.last_seq}", flush=True)
    try:
        w.append(FrameKind.COMMANDS, seq, 40, commands_payload(seq, 40), time.time_ns())
        print("A none", flush=True)
    except Exception as e:  # noqa: BLE001 - reported to the test
        print(f"A {type(e).__name__}", flush=True)
    os._exit(0)


def tail(directory: str) -> None:
    r = WalReader(directory)
    t = r.tail(0)
    frames = 0
    last = 0
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        for f in t:
            if f.kind == FrameKind.COMMANDS:
                if f.first_seq != last + 1 or bytes(f.payload) != commands_payload(f.first_seq, f.count):
                    print(f"E bad frame {f!r} after seq {last}", flush=True)
                    return
                last = f.last_seq
            frames += 1
        dp = r.durable()
        print(f"T {frames} {last} {dp.seq if dp else 0}", flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "stream":
        stream(args[0], int(args[1]), int(args[2]), args[3])
    elif mode == "hang":
        hang(args[0], int(args[1]), int(args[2]))
    elif mode == "tail":
        tail(args[0])
    elif mode == "full":
        full(args[0], int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
