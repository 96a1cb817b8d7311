"""Recovery: torn tails are dropped, corruption is refused with the segment and byte offset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from wal_payloads import append_batches, check_log, commands_payload

from pipeline.wal import (
    FrameKind,
    WalCorruption,
    WalReader,
    WalWriter,
    read_durable,
    recover,
    verify_chain,
)
from pipeline.wal.format import FRAME, crc32c

SEG = 16 << 10
CHILD = str(Path(__file__).with_name("_child.py"))


def _seg_path(d: Path, segno: int) -> Path:
    (p,) = d.glob(f"wal-{segno:010d}-*.seg")
    return p


def _flip(path: Path, offset: int, bit: int = 0x10) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ bit]))


def _crash_during_sync(d: Path, n: int, seg: int = SEG) -> int:
    """A writer that synced ``n`` frames (4 seqs each), sealed one more and was SIGKILLed inside
    that frame's fdatasync. Returns the last seq it reported durable."""
    p = subprocess.Popen([sys.executable, CHILD, "hang", str(d), str(seg), str(n)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        durable = int(p.stdout.readline().split()[1])
        assert p.stdout.readline().strip() == "H"  # inside the hung fdatasync
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        if p.stdout is not None:
            p.stdout.close()
    return durable


def _last_frame(d: Path):  # type: ignore[no-untyped-def]
    frames = list(WalReader(d).iter_frames())
    return frames[-1], _seg_path(d, frames[-1].segno)


def test_a_frame_sealed_but_not_yet_synced_survives_a_process_crash(tmp_path, monkeypatch) -> None:
    durable = _crash_during_sync(tmp_path, 10)
    assert durable == 40 and read_durable(tmp_path).seq == 40  # type: ignore[union-attr]
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    res = recover(tmp_path)
    assert res.last_seq == 44 and res.truncated_bytes == 0  # the page cache had it whole
    assert synced  # ... and recovery made it durable before anyone can publish it
    check_log(tmp_path, 44)


@pytest.mark.parametrize("damage", ["cut", "bitflip_payload", "bitflip_header"])
def test_torn_last_frame_is_truncated_and_the_chain_continues(tmp_path, damage: str) -> None:
    durable = _crash_during_sync(tmp_path, 10)
    f, path = _last_frame(tmp_path)
    assert f.first_seq == 41
    if damage == "cut":  # the frame reached the disk only partly
        with open(path, "r+b") as fh:
            fh.seek(f.offset + 40)
            fh.write(bytes(f.end - f.offset - 40))
    elif damage == "bitflip_payload":
        _flip(path, f.offset + 64 + 5)
    else:
        _flip(path, f.offset + 17)
    res = recover(tmp_path)
    assert res.last_seq == durable == 40
    assert res.offset == f.offset and res.truncated_bytes > 0
    assert check_log(tmp_path, 40) == 10
    with open(path, "rb") as fh:  # nothing of the torn frame is left
        fh.seek(f.offset)
        assert fh.read(f.end - f.offset) == bytes(f.end - f.offset)
    with WalWriter(tmp_path, segment_bytes=SEG, fencing_token=1) as w:
        last = append_batches(w, 30)
    check_log(tmp_path, last)
    assert verify_chain(tmp_path).ok


def test_torn_rotation_drops_the_new_segment(tmp_path) -> None:
    # A 4 KiB segment holds 30 frames of 128 B (+ header + SEAL): the unsynced 31st rotates, and
    # the crash comes inside the sync of segment 0 (SEAL sealed, segment 1 not finalized).
    durable = _crash_during_sync(tmp_path, 30, seg=4096)
    assert durable == 120
    new_seg = _seg_path(tmp_path, 1).name
    res = recover(tmp_path)
    assert new_seg in res.removed and not (tmp_path / new_seg).exists()
    assert res.sealed and res.segno == 0 and res.last_seq == 120
    check_log(tmp_path, 120)
    with WalWriter(tmp_path, segment_bytes=4096, fencing_token=1) as w:
        last = append_batches(w, 40, per=2, events_bytes=64)
    check_log(tmp_path, last)
    rep = verify_chain(tmp_path)
    assert rep.ok and len(rep.segments) > 2


@pytest.mark.parametrize("evidence", ["durable.pos", "stamps"])
def test_bitflip_in_a_middle_frame_is_corruption(tmp_path, evidence: str) -> None:
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        append_batches(w, 12, sync_every=1)
    frames = list(WalReader(tmp_path).iter_frames())
    victim = frames[9]
    path = _seg_path(tmp_path, victim.segno)
    _flip(path, victim.offset + 64 + 1)
    if evidence == "stamps":
        (tmp_path / "durable.pos").unlink()  # later frames' synced_off stamps are the evidence
    with pytest.raises(WalCorruption) as ei:
        recover(tmp_path)
    assert ei.value.segment == str(path) and ei.value.offset == victim.offset
    assert path.name in str(ei.value) and str(victim.offset) in str(ei.value)
    with pytest.raises(WalCorruption):
        list(WalReader(tmp_path).iter_frames())
    assert not verify_chain(tmp_path).ok


def test_bitflip_in_the_last_durable_frame_is_corruption_not_a_torn_tail(tmp_path) -> None:
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        append_batches(w, 5)
    f, path = _last_frame(tmp_path)
    _flip(path, f.offset + 64)
    with pytest.raises(WalCorruption, match="durable.pos says durable") as ei:
        recover(tmp_path)
    assert ei.value.offset == f.offset


def test_a_valid_crc_with_a_broken_chain_is_corruption(tmp_path) -> None:
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        append_batches(w, 6)
    f, path = _last_frame(tmp_path)
    frames = list(WalReader(tmp_path).iter_frames())
    victim = frames[3]
    with open(path, "r+b") as fh:  # tamper: rewrite a payload byte and fix up the CRC
        fh.seek(victim.offset)
        raw = bytearray(fh.read(victim.end - victim.offset))
        raw[64] ^= 0xFF
        length = FRAME.unpack_from(raw, 0)[2]
        raw[4:8] = crc32c(bytes(raw[8: 64 + length])).to_bytes(4, "little")
        fh.seek(victim.offset)
        fh.write(raw)
    rep = verify_chain(tmp_path)
    assert not rep.ok and any("hash chain broken" in e for s in rep.segments for e in s.errors)
    with pytest.raises(WalCorruption, match="hash chain broken"):
        recover(tmp_path)


def test_garbage_after_the_end_is_zeroed(tmp_path) -> None:
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        last = append_batches(w, 3)
    f, path = _last_frame(tmp_path)
    junk = os.urandom(300)
    with open(path, "r+b") as fh:  # a payload copied in whose header was never written
        fh.seek(f.end + 64)
        fh.write(junk)
    res = recover(tmp_path)
    assert res.offset == f.end and res.truncated_bytes == 64 + len(junk.rstrip(b"\0"))
    check_log(tmp_path, last)
    assert verify_chain(tmp_path).unsealed_tail_bytes == 0


def test_missing_durable_bytes_are_corruption(tmp_path) -> None:
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        append_batches(w, 3)
    f, path = _last_frame(tmp_path)
    with open(path, "r+b") as fh:  # the tail of the log vanished (zeroed)
        fh.seek(f.offset)
        fh.write(bytes(f.end - f.offset))
    with pytest.raises(WalCorruption, match="log ends here, but durable.pos"):
        recover(tmp_path)


def test_recover_on_an_empty_or_fresh_directory(tmp_path) -> None:
    assert recover(tmp_path).empty
    with WalWriter(tmp_path, segment_bytes=SEG) as w:
        w.append(FrameKind.COMMANDS, 1, 1, commands_payload(1, 1), 1)
    res = recover(tmp_path)
    assert not res.empty and res.last_seq == 1 and res.frames == 1 and res.truncated_bytes == 0


def test_a_hole_before_the_last_segment_is_corruption_not_a_torn_rotation(tmp_path) -> None:
    with WalWriter(tmp_path, segment_bytes=4096) as w:
        append_batches(w, 80)
    segs = sorted(tmp_path.glob("wal-*.seg"))
    segs[-2].unlink()
    with pytest.raises(WalCorruption, match=f"segment {len(segs) - 2} is missing"):
        recover(tmp_path)
    assert segs[-1].exists()  # never deleted on a guess
    with pytest.raises(WalCorruption):
        list(WalReader(tmp_path).iter_frames())
