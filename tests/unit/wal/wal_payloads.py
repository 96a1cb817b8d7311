"""Deterministic payloads: a frame's bytes are a function of its seq, so a reader can check them."""

from __future__ import annotations

import hashlib
import struct

_REC = struct.Struct("<QQ")
_MIX = 0x9E3779B97F4A7C15


def commands_payload(first_seq: int, count: int) -> bytes:
    """``count`` 16-byte records (seq, seq * golden mod 2**64)."""
    return b"".join(_REC.pack(s, (s * _MIX) & 0xFFFFFFFFFFFFFFFF)
                    for s in range(first_seq, first_seq + count))


def commands_ok(payload: memoryview, first_seq: int, count: int) -> bool:
    """Same check as ``bytes(payload) == commands_payload(...)``, vectorised."""
    import numpy as np

    if len(payload) != 16 * count:
        return False
    recs = np.frombuffer(payload, dtype="<u8").reshape(count, 2)
    want = np.arange(first_seq, first_seq + count, dtype=np.uint64)
    return bool((recs[:, 0] == want).all() and (recs[:, 1] == want * np.uint64(_MIX)).all())


def events_payload(first_seq: int, nbytes: int) -> bytes:
    block = hashlib.blake2b(first_seq.to_bytes(8, "little"), digest_size=64).digest()
    return (block * (nbytes // 64 + 1))[:nbytes]


def append_batches(w, batches: int, per: int = 4, events_bytes: int = 200,  # type: ignore[no-untyped-def]
                   sync_every: int = 0) -> int:
    """Append ``batches`` COMMANDS+EVENTS pairs continuing ``w``'s seq; returns the last seq."""
    from pipeline.wal import FrameKind

    seq = w.last_seq + 1
    for i in range(batches):
        w.append(FrameKind.COMMANDS, seq, per, commands_payload(seq, per), 1_000 + seq)
        w.append(FrameKind.EVENTS, seq, per, events_payload(seq, events_bytes), 1_000 + seq)
        seq += per
        if sync_every and (i + 1) % sync_every == 0:
            w.sync()
    return seq - 1


def check_log(directory, last_seq: int, first_seq: int = 1) -> int:  # type: ignore[no-untyped-def]
    """Every COMMANDS frame present, contiguous and with the right bytes; returns frames read."""
    from pipeline.wal import FrameKind, WalReader

    r = WalReader(directory)
    seq = first_seq
    n = 0
    for f in r.iter_frames():
        n += 1
        if f.kind == FrameKind.COMMANDS:
            assert f.first_seq == seq, (f, seq)
            assert commands_ok(f.payload, f.first_seq, f.count), f
            seq += f.count
        else:
            assert f.first_seq < seq
            if f.kind == FrameKind.EVENTS:
                assert bytes(f.payload) == events_payload(f.first_seq, len(f.payload)), f
    r.close()
    assert seq - 1 == last_seq, (seq - 1, last_seq)
    return n
