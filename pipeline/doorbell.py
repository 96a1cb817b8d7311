"""Doorbells: wake WAL readers in other processes when the durable watermark moves.

Readers (edges, publisher, settle) tail the WAL; without a wake-up they would either spin (burning
a core the 2-core box does not have) or sleep (adding up to a timer tick of latency: libuv timers
have 1 ms resolution). A doorbell is a named FIFO ``<run_dir>/doorbells/<reader>.fifo``:

* the reader creates it, opens it non-blocking for reading (plus a never-used writer end of its
  own so the FIFO never reports EOF), and adds the read fd to its event loop;
* the engine's flusher calls ``Ringer.ring()`` after each durable advance: one non-blocking 1-byte
  write per registered reader per synced batch (so at most a few thousand syscalls/s, never one per
  message). A full FIFO (EAGAIN) means the reader has not drained yet: it will wake anyway;
* the ringer rescans the directory at most every ``rescan_s`` (cold) and forgets readers whose
  FIFO has no reader any more (ENXIO / EPIPE).

Ownership: the reader creates and unlinks its FIFO; a crashed reader's FIFO is replaced when it
restarts (``Doorbell`` unlinks a stale one first). The ringer only opens and closes write ends.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path


def doorbell_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "doorbells"


def engine_bell_root(run_dir: str | os.PathLike[str]) -> Path:
    """Where the engine's own doorbell lives (``<root>/doorbells/engine.fifo``): apart from the
    WAL readers' bells, so edges ringing the engine wake only the engine and the flusher's rings
    never reach it. Edges ring it after pushing commands; a parked engine sleeps on it instead of
    a timer, so the first command after an idle spell is picked up at once, not after the rest of
    a back-off sleep (up to ``ParkBackoff.max_s``)."""
    return Path(run_dir) / "engine"


class Doorbell:
    """The reader side. ``fileno()`` becomes readable when the bell rang; ``drain()`` resets it."""

    def __init__(self, run_dir: str | os.PathLike[str], name: str) -> None:
        d = doorbell_dir(run_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / f"{name}.fifo"
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.mkfifo(self.path, 0o600)
        self._rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._keepalive = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)

    def fileno(self) -> int:
        return self._rfd

    def drain(self) -> int:
        """Read the rings that are waiting; returns how many. A read that comes back short
        emptied the FIFO (a pipe read returns what it holds, up to the size asked), so the
        common case is one ``read`` and no second one to see EAGAIN. A ring that lands after it
        leaves the FIFO readable for the next wait."""
        n = 0
        while True:
            try:
                chunk = os.read(self._rfd, 4096)
            except BlockingIOError:
                return n
            n += len(chunk)
            if len(chunk) < 4096:
                return n

    def close(self) -> None:
        for fd in (self._rfd, self._keepalive):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class Ringer:
    """The writer side (the engine's flusher thread). Not thread-safe: one thread rings."""

    def __init__(self, run_dir: str | os.PathLike[str], rescan_s: float = 0.1) -> None:
        self.dir = doorbell_dir(run_dir)
        self.rescan_s = rescan_s
        self._fds: dict[str, int] = {}
        self._next_scan = 0.0
        self.rings = 0

    def _scan(self) -> None:
        self._next_scan = time.monotonic() + self.rescan_s
        try:
            entries = list(self.dir.iterdir())
        except FileNotFoundError:
            return
        seen = set()
        for p in entries:
            if p.suffix != ".fifo":
                continue
            seen.add(p.name)
            if p.name in self._fds:
                continue
            try:
                if not stat.S_ISFIFO(p.stat().st_mode):
                    continue
                self._fds[p.name] = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue  # ENXIO: no reader yet; try again on the next scan
        for name in [n for n in self._fds if n not in seen]:
            self._drop(name)

    def _drop(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def ring(self) -> None:
        if time.monotonic() >= self._next_scan:
            self._scan()
        for name, fd in list(self._fds.items()):
            try:
                os.write(fd, b"\x01")
            except BlockingIOError:
                pass  # the reader has unread rings: it is awake or about to be
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ENXIO, errno.EBADF):
                    self._drop(name)
                else:
                    raise
        self.rings += 1

    def close(self) -> None:
        for name in list(self._fds):
            self._drop(name)
