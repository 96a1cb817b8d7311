"""WalReader: seeking by seq, tailing behind the durable watermark, rotation, gaps."""

from __future__ import annotations

import shutil
import time

import pytest
from wal_payloads import append_batches, commands_payload

from pipeline.wal import FrameKind, WalError, WalGapError, WalReader, WalWriter
from pipeline.wal.reader import REPLACED_CHECK_S

SEG = 8 << 10


def test_from_seq_starts_at_the_commands_frame_containing_it(tmp_path) -> None:
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        append_batches(w, 120, per=5)  # batches 1-5, 6-10, ...
    r = WalReader(tmp_path)
    frames = list(r.iter_frames(from_seq=258))  # inside the batch 256..260
    assert frames[0].kind == FrameKind.COMMANDS and frames[0].first_seq == 256
    assert frames[1].kind == FrameKind.EVENTS and frames[1].first_seq == 256
    assert frames[-1].first_seq == 596
    everything = list(r.iter_frames())
    assert len(everything) == 240 and everything[0].first_seq == 1
    assert list(r.iter_frames(from_seq=10_000)) == []
    seals = [f for f in r.iter_frames(include_seals=True) if f.kind == FrameKind.SEAL]
    assert len(seals) == len(list(tmp_path.glob("wal-*.seg"))) - 1
    assert all(s.first_seq == s.last_seq for s in seals)


def test_tail_never_passes_the_durable_watermark(tmp_path) -> None:
    w = WalWriter(tmp_path, segment_bytes=SEG)
    r = WalReader(tmp_path)
    t = r.tail(0)
    assert t.poll() == []
    last = append_batches(w, 10)
    assert list(t) == []  # appended, not synced: invisible
    w.sync()
    got = list(t)
    assert len(got) == 20 and got[-1].first_seq == last - 3
    more = append_batches(w, 200)  # rotates several times, nothing synced
    assert t.poll() == []
    w.sync()
    got = list(t)
    assert len(got) == 400 and got[-1].first_seq == more - 3
    assert {f.segno for f in got} == set(range(got[0].segno, got[-1].segno + 1))
    assert t.poll() == [] and t.frames == 420
    dp = r.durable()
    assert dp is not None and t.position == dp.position
    w.close()


def test_tail_from_a_seq_and_batches(tmp_path) -> None:
    w = WalWriter(tmp_path, segment_bytes=SEG)
    t = WalReader(tmp_path).tail(from_seq=41)  # before the log has it
    append_batches(w, 5)  # seqs 1..20
    w.sync()
    assert t.poll() == []
    append_batches(w, 20)  # seqs 21..100
    w.sync()
    first = t.poll(max_frames=3)
    assert [f.first_seq for f in first] == [41, 41, 45]
    rest = list(t)
    assert rest[-1].first_seq == 97 and len(first) + len(rest) == 30
    w.close()


def test_reading_from_a_pruned_seq_is_a_gap_error(tmp_path) -> None:
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        append_batches(w, 100)
    segs = sorted(tmp_path.glob("wal-*.seg"))
    segs[0].unlink()  # retention removed the oldest segment
    first_left = int(segs[1].name.split("-")[2][:-4])
    r = WalReader(tmp_path)
    with pytest.raises(WalGapError, match=f"seq {first_left - 1} is older"):
        list(r.iter_frames(from_seq=first_left - 1))
    f = next(iter(r.iter_frames(from_seq=first_left)))
    assert f.first_seq == first_left and bytes(f.payload) == commands_payload(f.first_seq, f.count)


def test_a_replaced_log_is_detected_by_a_tail(tmp_path) -> None:
    d = tmp_path / "wal"
    with WalWriter(d, segment_bytes=SEG) as w:
        append_batches(w, 3)
    t = WalReader(d).tail(0)
    assert len(t.poll()) == 6
    assert t.poll() == []  # idle, same log
    shutil.rmtree(d)
    with WalWriter(d, segment_bytes=SEG) as w:  # a brand-new log in the same place
        append_batches(w, 3)
    time.sleep(REPLACED_CHECK_S)  # an idle tail looks (one stat) at most this often
    with pytest.raises(WalError, match="replaced"):
        t.poll()
