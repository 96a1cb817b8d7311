"""md records: messages of any size survive encode -> broadcast ring -> reassembly, and a reader
that starts mid-message or is reset never yields a torn message."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from pipeline.publisher.errors import MessageTooLarge
from pipeline.publisher.record import (
    MAX_MESSAGE_BYTES,
    MD,
    MD_DATA_BYTES,
    MD_RECORD_BYTES,
    MdAssembler,
    MdEncoder,
    Msg,
)
from ringbuf import BroadcastReader, BroadcastWriter


def payloads(rng: np.random.Generator, n: int) -> list[bytes]:
    sizes = [0, 1, MD_DATA_BYTES - 1, MD_DATA_BYTES, MD_DATA_BYTES + 1, 3 * MD_DATA_BYTES]
    sizes += rng.integers(1, 5000, n).tolist()
    return [bytes(rng.integers(32, 127, s, dtype=np.uint8)) for s in sizes]


def test_layout_is_512_bytes() -> None:
    assert MD.itemsize == MD_RECORD_BYTES == 512
    assert MD.fields is not None and MD.fields["data"][1] == 48


def test_round_trip_through_a_broadcast_ring() -> None:
    rng = np.random.default_rng(1)
    msgs = payloads(rng, 200)
    name = f"spotx-test-{uuid.uuid4().hex[:10]}"
    w = BroadcastWriter.create(name, MD, 1 << 12)
    try:
        r = BroadcastReader.attach(name, MD, start="oldest")
        enc = MdEncoder(w.publish, epoch=77)
        for i, p in enumerate(msgs):
            enc.add(Msg.TRADE if i % 2 else Msg.BOOK_DELTA, 0x01000100 + i % 3, i + 10, i, p, 1234)
        enc.flush()
        asm = MdAssembler()
        out = []
        buf = np.zeros(37, MD)  # a small buffer splits multi-slot messages across reads
        while True:
            n = r.try_read(buf)
            if not n:
                break
            out += asm.feed(buf, n)
        assert [m.payload for m in out] == msgs
        assert [m.seq for m in out] == [i + 10 for i in range(len(msgs))]
        assert [m.prev_seq for m in out] == list(range(len(msgs)))
        assert {m.epoch for m in out} == {77} and {m.pub_ns for m in out} == {1234}
        assert asm.skipped == 0
        r.close()
    finally:
        w.unlink()
        w.close()


def test_encoder_flushes_when_full_and_refuses_oversize() -> None:
    batches: list[int] = []
    enc = MdEncoder(lambda recs: batches.append(len(recs)), capacity=2300)
    big = b"x" * (MD_DATA_BYTES * 2000)
    enc.add(Msg.BOOK_SNAPSHOT, 1, 1, 0, big, 0)
    enc.add(Msg.BOOK_SNAPSHOT, 1, 2, 0, big, 0)  # does not fit: the first batch goes out
    assert batches == [2000]
    enc.flush()
    assert batches == [2000, 2000] and enc.records == 4000 and enc.messages == 2
    with pytest.raises(MessageTooLarge):
        enc.add(Msg.BOOK_SNAPSHOT, 1, 3, 0, b"x" * (MAX_MESSAGE_BYTES + 1), 0)


def test_reader_joining_mid_message_skips_to_the_next_whole_one() -> None:
    recs: list[np.ndarray] = []
    enc = MdEncoder(lambda r: recs.append(r.copy()))
    enc.add(Msg.BOOK_SNAPSHOT, 5, 1, 0, b"a" * 2000, 0)  # 5 slots
    enc.add(Msg.TRADE, 6, 2, 0, b"trade", 0)
    enc.add(Msg.BOOK_SNAPSHOT, 5, 3, 0, b"b" * 1000, 0)  # 3 slots
    enc.flush()
    allr = recs[0]
    asm = MdAssembler()
    got = asm.feed(allr[2:], len(allr) - 2)  # starts in the middle of the first snapshot
    assert [(m.seq, m.payload[:1]) for m in got] == [(2, b"t"), (3, b"b")]
    asm2 = MdAssembler()
    part = asm2.feed(allr[:7], 7)  # snapshot 1 + trade + first slot of snapshot 2
    assert [m.seq for m in part] == [1, 2]
    asm2.reset()  # a lap: the partial snapshot is dropped, never glued to later slots
    assert asm2.feed(allr[7:], len(allr) - 7) == []
