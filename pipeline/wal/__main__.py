"""``python -m pipeline.wal verify|dump|recover DIR`` — operator tools (also ``spotx wal ...``).

verify   check segment headers, CRCs, the hash chain and SEAL roots; print the roots; exit 1 if bad
dump     list frames (kind, seq, count, bytes, fencing, ts, position) from ``--from-seq``
recover  run recovery now (drops a torn tail; refuses corruption); needs the writer stopped
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from pipeline.wal.durable import read_durable
from pipeline.wal.errors import WalError
from pipeline.wal.format import FrameKind
from pipeline.wal.reader import WalReader
from pipeline.wal.recovery import recover
from pipeline.wal.verify import verify_chain


def _out(*parts: object, file: TextIO | None = None) -> None:
    """The CLI's writer (library modules never print)."""
    stream = file if file is not None else sys.stdout
    stream.write(" ".join(str(p) for p in parts) + "\n")

def _verify(directory: str) -> int:
    rep = verify_chain(directory)
    for s in rep.segments:
        state = "sealed" if s.sealed else "open"
        _out(f"segment {s.segno:6d} seq {s.first_seq}..{s.last_seq} frames {s.frames} "
              f"{state} root {s.root} {'OK' if s.ok else 'BAD'}")
        for e in s.errors:
            _out(f"    ! {e}")
    for e in rep.errors:
        _out(f"! {e}")
    dp = read_durable(directory)
    if dp is not None:
        _out(f"durable seq {dp.seq} at segment {dp.segno} offset {dp.offset} "
              f"(fencing {dp.fencing}, generation {dp.generation})")
    _out(f"{'OK' if rep.ok else 'FAILED'}: {len(rep.segments)} segments, {rep.frames} frames, "
          f"last seq {rep.last_seq}, head {rep.head}")
    return 0 if rep.ok else 1


def _dump(directory: str, from_seq: int, limit: int, seals: bool, events: bool = False) -> int:
    r = WalReader(directory)
    for i, f in enumerate(r.iter_frames(from_seq, include_seals=seals)):
        if i >= limit:
            _out(f"... (--limit {limit})")
            break
        _out(f"{f.segno}:{f.offset:<10d} {FrameKind(f.kind).name:8s} seq {f.first_seq:<12d} "
              f"count {f.count:<6d} bytes {len(f.payload):<8d} fencing {f.fencing} ts {f.ts_ns}")
        if events and f.kind == FrameKind.EVENTS:
            for line in event_lines(bytes(f.payload)):
                _out("    " + line)
    r.close()
    return 0


def event_lines(payload: bytes) -> list[str]:
    """One line per EVENT record: seq, kind, order, account, symbol, quantities, reason by name."""
    import numpy as np

    from pipeline.records import EVENT, CancelReason, Ev, ExpireReason, RejectReason

    reasons: dict[int, type] = {int(Ev.CANCELED): CancelReason, int(Ev.EXPIRED): ExpireReason,
                                int(Ev.REJECTED): RejectReason}
    out = []
    for e in np.frombuffer(payload, EVENT):
        kind = int(e["kind"])
        try:
            name = Ev(kind).name
        except ValueError:
            name = str(kind)
        line = (f"seq {int(e['seq'])} {name} order {int(e['order_id'])} account "
                f"{int(e['account'])} symbol {int(e['symbol'])} qty {int(e['qty'])}")
        enum = reasons.get(kind)
        if enum is not None:
            try:
                line += f" reason {enum(int(e['reason'])).name}"
            except ValueError:
                line += f" reason {int(e['reason'])}"
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.wal")
    ap.add_argument("action", choices=("verify", "dump", "recover"))
    ap.add_argument("dir")
    ap.add_argument("--from-seq", type=int, default=0)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--seals", action="store_true", help="dump: include SEAL frames")
    ap.add_argument("--events", action="store_true",
                    help="dump: decode EVENTS frames, one line per event with its reason")
    a = ap.parse_args(argv)
    try:
        if a.action == "verify":
            return _verify(a.dir)
        if a.action == "dump":
            return _dump(a.dir, a.from_seq, a.limit, a.seals, a.events)
        res = recover(a.dir)
        _out(f"recovered: last seq {res.last_seq}, segment {res.segno} offset {res.offset}, "
              f"truncated {res.truncated_bytes} bytes, removed {list(res.removed)}")
        return 0
    except WalError as e:
        _out(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
