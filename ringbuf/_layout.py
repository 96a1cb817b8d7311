"""Mapping a ring segment, checking its header, and viewing caller records as kernel words
(shared by the SPSC and broadcast wrappers).

The byte layout itself is documented in ``_kernels.py``. The header is written by the creator
with the magic word last, so an attacher never accepts a half-written header; an attacher checks
magic, version, kind, record size, the dtype fingerprint and the segment size, and refuses with
``SegmentMismatch`` naming the first difference.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time

import numpy as np

from ringbuf import _segment
from ringbuf._kernels import (
    CTRL_BYTES,
    CTRL_WORDS,
    ERR_LAYOUT,
    ERR_SHAPE,
    H_CAP,
    H_CREATED_NS,
    H_CREATOR_PID,
    H_FPRINT,
    H_KIND,
    H_MAGIC,
    H_RECSIZE,
    H_VERSION,
    KIND_BROADCAST,
    MAGIC,
    VERSION,
)
from ringbuf.errors import SegmentMismatch

MAX_CAPACITY = 1 << 30
KIND_NAMES = {1: "spsc", 2: "broadcast"}


def _describe(dt: np.dtype) -> str:
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return f"{_describe(base)}{list(shape)}"
    if dt.names is None:
        return dt.str
    fields: dict[str, tuple] = dict(dt.fields or {})
    parts = [f"{n}@{fields[n][1]}:{_describe(fields[n][0])}" for n in dt.names]
    return "{" + ",".join(parts) + f"}}#{dt.itemsize}"


def fingerprint(dtype: np.dtype) -> int:
    """A stable int64 over field names, offsets, formats, byte order and item size."""
    digest = hashlib.blake2b(_describe(np.dtype(dtype)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def check_capacity(capacity: int) -> None:
    if (not isinstance(capacity, int | np.integer) or isinstance(capacity, bool)
            or capacity < 2 or capacity > MAX_CAPACITY or capacity & (capacity - 1)):
        raise ValueError(f"capacity must be a power of two in [2, 2**30], got {capacity!r}")


def check_dtype(dtype: np.dtype) -> None:
    if dtype.itemsize == 0 or dtype.itemsize % 8:
        raise ValueError(f"record size must be a positive multiple of 8 bytes, got {dtype.itemsize}")


def _stamp_bytes(kind: int, capacity: int) -> int:
    return -(-capacity * 8 // 128) * 128 if kind == KIND_BROADCAST else 0


def segment_bytes(kind: int, dtype: np.dtype, capacity: int) -> int:
    return CTRL_BYTES + _stamp_bytes(kind, capacity) + capacity * dtype.itemsize


class Mapped:
    """A mapped ring segment: ``ctrl`` words, ``stamps`` (broadcast) and ``slots`` [cap, words]."""

    def __init__(self, name: str, mm: mmap.mmap, inode: int, kind: int, dtype: np.dtype) -> None:
        self.name, self.mm, self.inode = name, mm, inode
        self.ctrl = np.frombuffer(mm, dtype=np.int64, count=CTRL_WORDS)
        cap = int(self.ctrl[H_CAP])
        nstamp = _stamp_bytes(kind, cap)
        self.stamps = np.frombuffer(mm, dtype=np.int64, offset=CTRL_BYTES, count=nstamp // 8)[:cap]
        words = dtype.itemsize // 8
        self.slots = np.frombuffer(mm, dtype=np.int64, offset=CTRL_BYTES + nstamp,
                                   count=cap * words).reshape(cap, words)

    def orphaned(self) -> bool:
        return _segment.orphaned(self.name, self.inode)

    def release(self) -> None:
        # Drop our views before closing the map. If a caller still holds a view (ring.slots), the
        # map cannot close (BufferError) and is unmapped when the last view is garbage-collected.
        self.ctrl = self.stamps = np.zeros(CTRL_WORDS, dtype=np.int64)
        self.slots = np.zeros((1, 1), dtype=np.int64)
        try:
            self.mm.close()
        except BufferError:
            pass


def create(name: str, kind: int, dtype: np.dtype, capacity: int, replace_stale: bool) -> Mapped:
    check_capacity(capacity)
    check_dtype(dtype)
    mm, inode = _segment.create(name, segment_bytes(kind, dtype, capacity), replace_stale)
    ctrl = np.frombuffer(mm, dtype=np.int64, count=CTRL_WORDS)
    ctrl[H_VERSION], ctrl[H_KIND], ctrl[H_RECSIZE] = VERSION, kind, dtype.itemsize
    ctrl[H_CAP], ctrl[H_FPRINT] = capacity, fingerprint(dtype)
    ctrl[H_CREATOR_PID], ctrl[H_CREATED_NS] = os.getpid(), time.time_ns()
    ctrl[H_MAGIC] = MAGIC  # last: an attacher never accepts a half-written header
    del ctrl
    return Mapped(name, mm, inode, kind, dtype)


def _mismatch(mm: mmap.mmap, kind: int, dtype: np.dtype) -> str | None:
    if len(mm) < CTRL_BYTES:
        return f"{len(mm)} bytes, too small to be a ring"
    h = np.frombuffer(mm, dtype=np.int64, count=CTRL_WORDS)
    if h[H_MAGIC] != MAGIC:
        return "not a spotx ring (bad magic; or its creator has not finished)"
    if h[H_VERSION] != VERSION:
        return f"layout version {int(h[H_VERSION])}, this code reads {VERSION}"
    if h[H_KIND] != kind:
        return (f"a {KIND_NAMES.get(int(h[H_KIND]), h[H_KIND])} ring, "
                f"expected {KIND_NAMES[kind]}")
    if h[H_RECSIZE] != dtype.itemsize:
        return f"record size {int(h[H_RECSIZE])} bytes, expected {dtype.itemsize} ({dtype})"
    if h[H_FPRINT] != fingerprint(dtype):
        return f"record dtype differs from the creator's (same size {dtype.itemsize}, other fields)"
    cap = int(h[H_CAP])
    if cap < 2 or cap & (cap - 1) or len(mm) != segment_bytes(kind, dtype, cap):
        return f"capacity {cap} does not match the segment size {len(mm)}"
    return None


def attach(name: str, kind: int, dtype: np.dtype) -> Mapped:
    mm, inode = _segment.attach(name)
    why = _mismatch(mm, kind, dtype)
    if why:
        mm.close()
        raise SegmentMismatch(name, why)
    return Mapped(name, mm, inode, kind, dtype)


_WORDS: dict[np.dtype, np.dtype] = {}


def _words(dtype: np.dtype) -> np.dtype:
    """``(int64, words)``, built once per record dtype: numpy parses a tuple dtype on every
    ``view`` (1.1 us a call measured here, against 0.4 us with the dtype object)."""
    w = _WORDS.get(dtype)
    if w is None:
        w = _WORDS[dtype] = np.dtype((np.int64, dtype.itemsize // 8))
    return w


def src_words(records: np.ndarray | np.void, dtype: np.dtype, name: str) -> np.ndarray:
    """One record or an array of ``dtype`` records as ``[n, words]`` int64 rows (copies only
    when the input is not already a 1-D contiguous array)."""
    arr = records if isinstance(records, np.ndarray) else np.asarray(records)
    if arr.dtype != dtype:
        raise TypeError(f"ring {name!r} carries {dtype}, got {arr.dtype}")
    if arr.ndim != 1 or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr.reshape(-1))
    return arr.view(_words(dtype))


def dst_words(out: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``out`` as ``[n, words]`` int64 rows; never a copy (a pop into a copy would be lost)."""
    if not isinstance(out, np.ndarray) or out.dtype != dtype:
        raise TypeError(f"ring {name!r} carries {dtype}, got {getattr(out, 'dtype', type(out))}")
    if out.ndim != 1 or not out.flags.c_contiguous:
        raise ValueError("out must be a 1-D C-contiguous array (use np.ascontiguousarray)")
    return out.view(_words(dtype))


def checked(status: int, name: str) -> int:
    """A kernel's return value, with its error codes turned into exceptions."""
    if status == ERR_LAYOUT:
        raise SegmentMismatch(name, f"layout version {VERSION} compiled into the ring kernels "
                              "differs from the segment's: a stale numba cache? (ringbuf/README.md)")
    if status == ERR_SHAPE:
        raise TypeError(f"ring {name!r}: record width differs from the ring's")
    return status
