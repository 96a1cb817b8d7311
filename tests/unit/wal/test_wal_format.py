"""Layout of segment headers, frames and durable.pos."""

from __future__ import annotations

import struct

import pytest

from pipeline.wal import format as fmt
from pipeline.wal.durable import DURABLE_BYTES, DurableFile, read_durable
from pipeline.wal.errors import WalError


def test_struct_sizes_match_the_documented_layout() -> None:
    assert fmt.FRAME.size == fmt.HEADER_BYTES == 64
    assert fmt.SEG.size == fmt.SEG_HEADER_BYTES == 64
    assert fmt.FRAME_PREFIX.size == 48  # everything before prev_hash
    assert fmt.SEAL_FRAME_BYTES % fmt.ALIGN == 0


def test_segment_header_round_trip_and_crc() -> None:
    h = fmt.SegmentHeader(3, 4000, 101, 9, b"r" * 16, 0xABC, 1 << 20)
    raw = h.pack()
    assert fmt.parse_segment_header(raw) == h
    unfinal = h.pack(final=False)
    assert fmt.parse_segment_header(unfinal) is None  # CRC zero until the root is known
    flipped = bytearray(raw)
    flipped[20] ^= 1
    assert fmt.parse_segment_header(bytes(flipped)) is None


def _frame(payload: bytes, kind: int = fmt.FrameKind.COMMANDS) -> bytearray:
    buf = bytearray(4096)
    fmt.FRAME.pack_into(buf, 0, fmt.FRAME_MAGIC, 0, len(payload), kind, 0, 1, 1, 0, 0, 0,
                        bytes(16))
    buf[64: 64 + len(payload)] = payload
    struct.pack_into("<I", buf, 4, fmt.crc32c(bytes(buf[8: 64 + len(payload)])))
    return buf


def test_probe_classifies_ok_end_and_bad() -> None:
    buf = _frame(b"hello world")
    st, h = fmt.probe(memoryview(buf), 0, len(buf))
    assert st == fmt.OK and h is not None and h[2] == 11
    assert fmt.probe(memoryview(buf), 1024, len(buf))[0] == fmt.END


@pytest.mark.parametrize("offset", [8, 9, 13, 16, 40, 50, 64, 70])  # length, kind, seq, ts, hash, payload
def test_crc_covers_every_byte_after_itself_including_the_length(offset: int) -> None:
    buf = _frame(b"hello world")
    buf[offset] ^= 0x04
    assert fmt.probe(memoryview(buf), 0, len(buf))[0] == fmt.BAD


def test_position_packs_segment_and_offset_monotonically() -> None:
    assert fmt.split_position(fmt.position(5, 1234)) == (5, 1234)
    assert fmt.position(1, 64) > fmt.position(0, (1 << 32) - 8)


def test_durable_file_seqlock_round_trip(tmp_path) -> None:
    w = DurableFile(tmp_path, writable=True)
    assert (tmp_path / "durable.pos").stat().st_size == DURABLE_BYTES
    r = DurableFile(tmp_path, writable=False)
    assert r.read() is None  # never published
    w.publish(42, 3, 4096, 77, 5)
    dp = r.read()
    assert dp is not None and (dp.seq, dp.segno, dp.offset, dp.wal_id, dp.fencing) == (42, 3, 4096, 77, 5)
    assert dp.generation % 2 == 0 and dp.position == fmt.position(3, 4096)
    w.publish(43, 3, 4200, 77, 5)
    assert r.read().seq == 43  # type: ignore[union-attr]
    w.close()
    r.close()
    assert read_durable(tmp_path).seq == 43  # type: ignore[union-attr]


def test_durable_reader_survives_a_writer_that_died_mid_update(tmp_path) -> None:
    w = DurableFile(tmp_path, writable=True)
    w.publish(10, 0, 128, 1, 0)
    r = DurableFile(tmp_path, writable=False)
    assert r.read().seq == 10  # type: ignore[union-attr]
    struct.pack_into("<Q", w._mm, 8, 3)  # odd generation: an update that never finished
    assert r.read().seq == 10  # type: ignore[union-attr]  # the last consistent value
    w.publish(11, 0, 256, 1, 0)  # a restarted writer moves on from the odd value
    assert r.read().seq == 11  # type: ignore[union-attr]


def test_durable_file_rejects_foreign_file(tmp_path) -> None:
    (tmp_path / "durable.pos").write_bytes(b"x" * 64)
    with pytest.raises(WalError, match="not a spotx durable.pos"):
        DurableFile(tmp_path, writable=False)
