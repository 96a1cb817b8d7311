"""verify_chain and the CLI: integrity roots, tamper evidence, exit codes."""

from __future__ import annotations

import subprocess
import sys

from wal_payloads import append_batches

from pipeline.wal import WalReader, WalWriter, verify_chain
from pipeline.wal.__main__ import main

SEG = 8 << 10


def _log(d):  # type: ignore[no-untyped-def]
    with WalWriter(d, segment_bytes=SEG) as w:
        return append_batches(w, 80, sync_every=9)


def test_roots_are_stable_and_link_the_segments(tmp_path) -> None:
    last = _log(tmp_path)
    rep = verify_chain(tmp_path)
    assert rep.ok and rep.last_seq == last and rep.frames == 160
    roots = rep.roots()
    assert len(roots) == len(rep.segments) - 1  # every segment but the open one is sealed
    assert verify_chain(tmp_path, expected_roots=roots).ok
    with WalWriter(tmp_path, segment_bytes=SEG) as w:  # appending later never changes old roots
        append_batches(w, 40)
    rep2 = verify_chain(tmp_path, expected_roots=roots)
    assert rep2.ok and {k: rep2.roots()[k] for k in roots} == roots


def test_a_tampered_payload_is_detected(tmp_path) -> None:
    _log(tmp_path)
    roots = verify_chain(tmp_path).roots()
    f = list(WalReader(tmp_path).iter_frames())[30]
    (path,) = tmp_path.glob(f"wal-{f.segno:010d}-*.seg")
    with open(path, "r+b") as fh:
        fh.seek(f.offset + 64 + 2)
        b = fh.read(1)
        fh.seek(f.offset + 64 + 2)
        fh.write(bytes([b[0] ^ 1]))
    rep = verify_chain(tmp_path, expected_roots=roots)
    assert not rep.ok
    bad = [s for s in rep.segments if s.errors]
    assert bad[0].segno == f.segno and str(f.offset) in bad[0].errors[0]


def test_a_forged_segment_is_caught_by_a_recorded_root(tmp_path) -> None:
    _log(tmp_path)
    roots = verify_chain(tmp_path).roots()
    forged = {k: "00" * 16 for k in roots}
    rep = verify_chain(tmp_path, expected_roots=forged)
    assert not rep.ok and all("recorded root" in s.errors[0] for s in rep.segments if s.sealed)
    rep = verify_chain(tmp_path, expected_roots={999: "ab" * 16})
    assert not rep.ok and "999" in rep.errors[0]


def test_a_missing_middle_segment_is_reported(tmp_path) -> None:
    _log(tmp_path)
    segs = sorted(tmp_path.glob("wal-*.seg"))
    segs[2].unlink()
    rep = verify_chain(tmp_path)
    assert not rep.ok and any("segment 2 is missing" in e for s in rep.segments for e in s.errors)


def test_cli_verify_dump_and_recover(tmp_path, capsys) -> None:
    _log(tmp_path)
    assert main(["verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "OK:" in out and "durable seq 320" in out
    assert main(["dump", str(tmp_path), "--from-seq", "300", "--limit", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "COMMANDS seq 297" in out[0] and len(out) == 4
    assert main(["recover", str(tmp_path)]) == 0
    assert "last seq 320" in capsys.readouterr().out
    segs = sorted(tmp_path.glob("wal-*.seg"))
    with open(segs[1], "r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff")
    assert main(["verify", str(tmp_path)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_module_entry_point_runs(tmp_path) -> None:
    _log(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pipeline.wal", "verify", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK:" in r.stdout
