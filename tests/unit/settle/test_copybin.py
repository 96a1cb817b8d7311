"""settle.copybin: the binary COPY stream decodes back to the same rows (parsed per the PG spec)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from settle.copybin import COLUMNS, HEADER, PG_EPOCH_US, TRAILER, encode
from settle.postings import POSTING


def parse(buf: bytes) -> list[tuple[int, ...]]:
    assert buf.startswith(HEADER) and buf.endswith(TRAILER)
    pos, out = len(HEADER), []
    while True:
        (nf,) = struct.unpack_from(">h", buf, pos)
        pos += 2
        if nf == -1:
            break
        vals = []
        for _ in range(nf):
            (n,) = struct.unpack_from(">i", buf, pos)
            pos += 4
            vals.append(int.from_bytes(buf[pos:pos + n], "big", signed=True))
            pos += n
        out.append(tuple(vals))
    assert pos == len(buf)
    return out


def test_roundtrip_including_extremes() -> None:
    p = np.zeros(3, POSTING)
    p["shard"] = [0, -1, 32767]
    p["seq"] = [1, 2**62, 5]
    p["leg"] = [0, 7, 2**31 - 1]
    p["account"] = [1, 2**32 - 1, 3]
    p["asset"] = [1, 2, 32767]
    p["amount"] = [-(2**63) + 1, 2**63 - 1, -5]
    p["kind"] = [1, 2, 5]
    p["symbol"] = [0, 65535, 3]
    p["trade_id"] = [0, 9, 2**40]
    p["fencing"] = [0, 3, 2**50]
    p["ts_ns"] = [PG_EPOCH_US * 1000, 1_767_225_600_123_456_789, 0]
    got = parse(encode(p))
    assert len(got) == 3 and all(len(r) == len(COLUMNS) for r in got)
    for r, src in zip(got, p, strict=True):
        assert r[:10] == tuple(int(src[f]) for f in ("shard", "seq", "leg", "account", "asset",
                                                     "amount", "kind", "symbol", "trade_id", "fencing"))
        assert r[10] == int(src["ts_ns"]) // 1000 - PG_EPOCH_US
    assert got[0][10] == 0  # 2000-01-01 is PG's epoch


def test_empty_and_wrong_dtype() -> None:
    assert encode(np.zeros(0, POSTING)) == HEADER + TRAILER
    with pytest.raises(TypeError):
        encode(np.zeros(2, np.int64))
