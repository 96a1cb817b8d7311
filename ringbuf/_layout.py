"""Shared by the SPSC and broadcast wrappers: mapping a segment and checking its header."""

from __future__ import annotations

import mmap
import os
import zlib

import numpy as np

from ringbuf import _segment
from ringbuf._kernels import (
    CTRL_BYTES,
    CTRL_WORDS,
    I_CAP,
    I_FPRINT,
    I_KIND,
    I_MAGIC,
    I_PID,
    I_RECSIZE,
    I_VERSION,
    MAGIC,
    VERSION,
)
from ringbuf.errors import SegmentMismatch


def fingerprint(dtype: np.dtype) -> int:
    """A stable int64 of the dtype's layout: attaching with another layout fails loudly."""
    text = f"{dtype.itemsize}:{dtype!s}"  # str() spells names, formats and offsets
    return zlib.crc32(text.encode())


def check_capacity(capacity: int) -> None:
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two >= 2, got {capacity}")


def check_dtype(dtype: np.dtype) -> None:
    if dtype.itemsize % 8:
        raise ValueError(f"record size must be a multiple of 8 bytes, got {dtype.itemsize}")


class Mapped:
    """A mapped ring segment: ``ctrl`` (int64 words) and ``slots`` (2-D int64 words)."""

    def __init__(self, name: str, mm: mmap.mmap, slot_words: int) -> None:
        self.name = name
        self.mm = mm
        self.ctrl = np.frombuffer(mm, dtype=np.int64, count=CTRL_WORDS)
        cap = int(self.ctrl[I_CAP])
        self.slots = np.frombuffer(mm, dtype=np.int64, offset=CTRL_BYTES,
                                   count=cap * slot_words).reshape(cap, slot_words)

    def release(self) -> None:
        # Drop the numpy views before closing the map (an exported buffer cannot be closed).
        self.ctrl = np.zeros(CTRL_WORDS, dtype=np.int64)
        self.slots = np.zeros((1, 1), dtype=np.int64)
        try:
            self.mm.close()
        except BufferError:
            pass  # a caller still holds a view; the map goes when that view does


def create(name: str, kind: int, dtype: np.dtype, capacity: int, slot_words: int,
           replace_stale: bool) -> Mapped:
    check_capacity(capacity)
    check_dtype(dtype)
    fprint = fingerprint(dtype)
    mm = _segment.create(name, CTRL_BYTES + capacity * slot_words * 8, replace_stale)
    ctrl = np.frombuffer(mm, dtype=np.int64, count=CTRL_WORDS)
    ctrl[I_VERSION], ctrl[I_KIND], ctrl[I_RECSIZE] = VERSION, kind, dtype.itemsize
    ctrl[I_CAP], ctrl[I_FPRINT], ctrl[I_PID] = capacity, fprint, os.getpid()
    ctrl[I_MAGIC] = MAGIC  # last: an attacher never sees a half-written header as valid
    del ctrl
    return Mapped(name, mm, slot_words)


def attach(name: str, kind: int, dtype: np.dtype, slot_words_extra: int) -> Mapped:
    mm = _segment.attach(name)
    if len(mm) < CTRL_BYTES:
        mm.close()
        raise SegmentMismatch(name, "too small to be a ring")
    ctrl = np.frombuffer(mm, dtype=np.int64, count=CTRL_WORDS)
    why = None
    if ctrl[I_MAGIC] != MAGIC or ctrl[I_VERSION] != VERSION:
        why = "not a spotx ring (bad magic or version)"
    elif ctrl[I_KIND] != kind:
        why = f"ring kind {int(ctrl[I_KIND])}, expected {kind}"
    elif ctrl[I_RECSIZE] != dtype.itemsize:
        why = f"record size {int(ctrl[I_RECSIZE])}, expected {dtype.itemsize}"
    elif ctrl[I_FPRINT] != fingerprint(dtype):
        why = "record dtype differs from the creator's"
    del ctrl
    if why:
        mm.close()
        raise SegmentMismatch(name, why)
    return Mapped(name, mm, dtype.itemsize // 8 + slot_words_extra)
