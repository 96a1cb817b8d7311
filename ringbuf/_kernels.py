# mypy: ignore-errors
"""numba kernels of the rings. Hot path: no allocation, no syscalls, no locks.

Control block (int64 words; each counter group on its own 64-byte cache line so the producer and
consumer never write the same line):

    line 0  [0..7]   magic, version, kind, record_size, capacity, dtype fingerprint, creator pid, -
    line 1  [8..15]  TAIL (records ever pushed; producer writes), producer's cached HEAD,
                     full events, peak depth, pushed batches
    line 2  [16..23] HEAD (records ever popped; consumer writes), consumer's cached TAIL,
                     empty polls, popped batches
    line 3  [24..31] broadcast: published cursor (writer), laps seen (readers add nothing here)

Slots follow at byte 256 as a 2-D int64 array ``[capacity, record_size // 8]``: one compiled
kernel serves every record dtype (records are multiples of 8 bytes). Cursors only grow; slot index
is ``cursor & (capacity - 1)``.

Ordering: the producer copies records, then release-stores TAIL; the consumer acquire-loads TAIL,
copies, then release-stores HEAD. Each side reads the other's cursor only when its cached copy says
the ring looks full (producer) or empty (consumer), so in steady state a side touches the other's
cache line once per batch, not once per record.

Broadcast slots carry one extra leading word, the stamp: ``position + 1`` once the record at that
position is complete, 0 while being written (a seqlock). A reader checks the stamp before and after
copying; a mismatch means the writer lapped it mid-read and nothing torn is returned.
"""

from __future__ import annotations

import numba
import numpy as np

from ringbuf._atomics import fence_acquire, fence_release, load_acquire, store_release

CTRL_WORDS = 32
CTRL_BYTES = CTRL_WORDS * 8
MAGIC = 0x5350_4F54_5852_4E47  # "SPOTXRNG"
VERSION = 1
KIND_SPSC = 1
KIND_BROADCAST = 2

I_MAGIC, I_VERSION, I_KIND, I_RECSIZE, I_CAP, I_FPRINT, I_PID = 0, 1, 2, 3, 4, 5, 6
I_TAIL, I_HEAD_CACHE, I_FULL, I_PEAK, I_PUSH_BATCHES = 8, 9, 10, 11, 12
I_HEAD, I_TAIL_CACHE, I_EMPTY, I_POP_BATCHES = 16, 17, 18, 19
I_PUBLISHED = 24

_opts = {"cache": True, "nogil": True, "boundscheck": False}


@numba.njit(**_opts)
def spsc_push(ctrl: np.ndarray, slots: np.ndarray, src: np.ndarray, n: int) -> int:
    """Copy up to ``n`` rows of ``src`` into the ring; returns how many fit (0 when full)."""
    cap = slots.shape[0]
    mask = cap - 1
    words = slots.shape[1]
    tail = ctrl[I_TAIL]
    head = ctrl[I_HEAD_CACHE]
    free = cap - (tail - head)
    if free < n:
        head = load_acquire(ctrl, I_HEAD)
        ctrl[I_HEAD_CACHE] = head
        free = cap - (tail - head)
    k = n if n < free else free
    if k <= 0:
        ctrl[I_FULL] += 1
        return 0
    for i in range(k):
        s = (tail + i) & mask
        for w in range(words):
            slots[s, w] = src[i, w]
    store_release(ctrl, I_TAIL, tail + k)
    depth = tail + k - head
    if depth > ctrl[I_PEAK]:
        ctrl[I_PEAK] = depth
    ctrl[I_PUSH_BATCHES] += 1
    if k < n:
        ctrl[I_FULL] += 1
    return k


@numba.njit(**_opts)
def spsc_pop(ctrl: np.ndarray, slots: np.ndarray, dst: np.ndarray, max_n: int) -> int:
    """Copy up to ``max_n`` records out of the ring into ``dst``; returns how many (0 when empty)."""
    cap = slots.shape[0]
    mask = cap - 1
    words = slots.shape[1]
    head = ctrl[I_HEAD]
    tail = ctrl[I_TAIL_CACHE]
    if tail - head <= 0:
        tail = load_acquire(ctrl, I_TAIL)
        ctrl[I_TAIL_CACHE] = tail
    avail = tail - head
    if avail <= 0:
        ctrl[I_EMPTY] += 1
        return 0
    k = max_n if max_n < avail else avail
    for i in range(k):
        s = (head + i) & mask
        for w in range(words):
            dst[i, w] = slots[s, w]
    store_release(ctrl, I_HEAD, head + k)
    ctrl[I_POP_BATCHES] += 1
    return k


@numba.njit(**_opts)
def spsc_depth(ctrl: np.ndarray) -> int:
    return load_acquire(ctrl, I_TAIL) - load_acquire(ctrl, I_HEAD)


@numba.njit(**_opts)
def bcast_publish(ctrl: np.ndarray, slots: np.ndarray, src: np.ndarray, n: int) -> int:
    """Writer: append ``n`` records; never waits for readers. Returns the new published cursor."""
    cap = slots.shape[0]
    mask = cap - 1
    words = slots.shape[1] - 1
    pos = ctrl[I_PUBLISHED]
    for i in range(n):
        s = (pos + i) & mask
        slots[s, 0] = 0  # being written
        fence_release()
        for w in range(words):
            slots[s, w + 1] = src[i, w]
        store_release(slots.reshape(-1), s * (words + 1), pos + i + 1)
    store_release(ctrl, I_PUBLISHED, pos + n)
    return pos + n


@numba.njit(**_opts)
def bcast_read(ctrl: np.ndarray, slots: np.ndarray, cursor: int, dst: np.ndarray,
               max_n: int) -> tuple[int, int]:
    """Reader: copy records from ``cursor`` on. Returns (n_read, missed).

    ``missed > 0`` means the writer lapped this reader: records ``cursor .. cursor+missed-1`` are
    gone; nothing was copied and the caller must resync (e.g. from a snapshot) at
    ``cursor + missed`` or later.
    """
    cap = slots.shape[0]
    mask = cap - 1
    words = slots.shape[1] - 1
    flat = slots.reshape(-1)
    published = load_acquire(ctrl, I_PUBLISHED)
    if published - cursor > cap:
        return 0, published - cap - cursor
    avail = published - cursor
    k = max_n if max_n < avail else avail
    for i in range(k):
        pos = cursor + i
        s = pos & mask
        s1 = load_acquire(flat, s * (words + 1))
        if s1 != pos + 1:
            # overwritten by a later lap (or being overwritten): report how far behind we are
            return 0, _missed(ctrl, cap, cursor)
        for w in range(words):
            dst[i, w] = slots[s, w + 1]
        fence_acquire()
        s2 = load_acquire(flat, s * (words + 1))
        if s2 != s1:
            return 0, _missed(ctrl, cap, cursor)
    return k, 0


@numba.njit(**_opts)
def _missed(ctrl: np.ndarray, cap: int, cursor: int) -> int:
    m = load_acquire(ctrl, I_PUBLISHED) - cap - cursor + 1
    return m if m > 1 else 1
