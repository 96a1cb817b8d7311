# mypy: ignore-errors
"""numba kernels of the rings, and the segment layout they share. Hot path: no allocation, no
syscall, no lock; every kernel is O(records moved) and returns an integer status.

Segment layout (all words int64, little-endian)::

    ctrl   [CTRL_WORDS] 1024 bytes, in 128-byte groups (two cache lines, so the adjacent-line
                        prefetcher never pairs one side's hot line with the other's):
      group 0  header   magic, version, kind, record_size, capacity, dtype fingerprint,
                        creator pid, created ns, producer token, consumer token (single-writer
                        roles, see _roles.py)
      group 1  TAIL     records ever pushed / published. Written only by the producer (writer).
      group 2  producer-private: cached HEAD, full waits, peak depth seen by the producer
      group 3  HEAD     records ever popped. Written only by the consumer (SPSC only).
      group 4  consumer-private: cached TAIL, empty waits, peak depth seen by the consumer
    stamps [capacity]   broadcast only (padded to 128 bytes): seqlock stamp per slot
    slots  [capacity, record_size // 8]   the records, as int64 words

A 2-D int64 view of the slots lets one compiled kernel serve every record dtype (records are a
multiple of 8 bytes); callers pass their records through ``ringbuf.as_words``. Cursors only grow
(int64: 292 years at 1e9/s); slot of position p is ``p & (capacity - 1)``.

SPSC ordering: the producer copies records, then release-stores TAIL; the consumer acquire-loads
TAIL, copies, then release-stores HEAD. Each side reads the other's counter only when its cached
copy cannot satisfy the request, so in steady state a side pulls the other's line once per batch.

Broadcast (seqlock per slot): the writer stores stamp 0, fences, writes the record, then
release-stores ``position + 1``; the reader loads the stamp (acquire), copies, fences, reloads it.
Equal and ``== position + 1`` means the copy is whole; anything else means the writer lapped the
reader and the record is lost to it. Stamps per slot only grow, so there is no ABA.
"""

from __future__ import annotations

import os

import numba
import numpy as np

from ringbuf._atomics import cas, fence_acquire, fence_release, load_acquire, store_release

# One place for the numba options. A debug test run sets NUMBA_BOUNDSCHECK=1 (numba's own global
# override); caching is then off so checked and unchecked builds never share a cache entry.
_DEBUG = os.environ.get("NUMBA_BOUNDSCHECK", "") == "1"
NJIT = {"cache": not _DEBUG, "nogil": True, "boundscheck": _DEBUG}

CTRL_WORDS = 128
CTRL_BYTES = CTRL_WORDS * 8
GROUP_WORDS = 16
MAGIC = 0x5350_4F54_5852_4E47  # "SPOTXRNG"
VERSION = 2
KIND_SPSC = 1
KIND_BROADCAST = 2

H_MAGIC, H_VERSION, H_KIND, H_RECSIZE, H_CAP, H_FPRINT, H_CREATOR_PID, H_CREATED_NS = range(8)
H_PRODUCER, H_CONSUMER = 8, 9  # role tokens (broadcast: H_PRODUCER is the writer)
I_TAIL = 1 * GROUP_WORDS
I_PUBLISHED = I_TAIL
I_HEAD_CACHE, I_FULL_WAITS, I_PEAK_PROD = 2 * GROUP_WORDS, 2 * GROUP_WORDS + 1, 2 * GROUP_WORDS + 2
I_HEAD = 3 * GROUP_WORDS
I_TAIL_CACHE, I_EMPTY_WAITS, I_PEAK_CONS = 4 * GROUP_WORDS, 4 * GROUP_WORDS + 1, 4 * GROUP_WORDS + 2

# Status codes. Kernels return counts >= 0; bcast_read returns -missed (< 0) when lapped.
ERR_SHAPE = -(1 << 62)  # the caller's array does not have the ring's record width
# The segment's layout version is not the one compiled into this kernel. Seen when a caller's
# numba cache still holds an older inlined copy of these kernels (README: numba cache caveat).
ERR_LAYOUT = ERR_SHAPE + 1


@numba.njit(**NJIT)
def spsc_push(ctrl, slots, src, n):
    """Producer: copy up to ``n`` rows of ``src`` into the ring. Returns how many fit (0 = full),
    ERR_SHAPE when ``src`` is not ``[*, record_words]``, ERR_LAYOUT (see above)."""
    if ctrl[H_VERSION] != VERSION:  # header word: written once, stays cached
        return ERR_LAYOUT
    words = slots.shape[1]
    if src.shape[1] != words:
        return ERR_SHAPE
    if n > src.shape[0]:
        n = src.shape[0]
    if n <= 0:
        return 0
    cap = slots.shape[0]
    mask = cap - 1
    tail = ctrl[I_TAIL]  # our own counter: only this process writes it
    head = ctrl[I_HEAD_CACHE]
    fresh = cap - (tail - head) < n
    if fresh:
        head = load_acquire(ctrl, I_HEAD)
        ctrl[I_HEAD_CACHE] = head
    free = cap - (tail - head)
    k = n if n < free else free
    if k < n:
        ctrl[I_FULL_WAITS] += 1
    if k <= 0:
        return 0
    for i in range(k):
        s = (tail + i) & mask
        for w in range(words):
            slots[s, w] = src[i, w]
    store_release(ctrl, I_TAIL, tail + k)
    # Depth is exact only right after a fresh look at HEAD (the cached one over-states it), so the
    # producer samples its peak then; the consumer samples at each of its own fresh looks.
    if fresh and tail + k - head > ctrl[I_PEAK_PROD]:
        ctrl[I_PEAK_PROD] = tail + k - head
    return k


@numba.njit(**NJIT)
def spsc_pop(ctrl, slots, dst, max_n):
    """Consumer: copy up to ``max_n`` records into ``dst[:k]``. Returns k (0 = empty),
    ERR_SHAPE when ``dst`` is not ``[*, record_words]``, ERR_LAYOUT (see above)."""
    if ctrl[H_VERSION] != VERSION:  # header word: written once, stays cached
        return ERR_LAYOUT
    words = slots.shape[1]
    if dst.shape[1] != words:
        return ERR_SHAPE
    if max_n > dst.shape[0]:
        max_n = dst.shape[0]
    if max_n <= 0:
        return 0
    mask = slots.shape[0] - 1
    head = ctrl[I_HEAD]  # our own counter
    tail = ctrl[I_TAIL_CACHE]
    if tail - head < max_n:
        tail = load_acquire(ctrl, I_TAIL)
        ctrl[I_TAIL_CACHE] = tail
        if tail - head > ctrl[I_PEAK_CONS]:
            ctrl[I_PEAK_CONS] = tail - head
    avail = tail - head
    if avail <= 0:
        ctrl[I_EMPTY_WAITS] += 1
        return 0
    k = max_n if max_n < avail else avail
    for i in range(k):
        s = (head + i) & mask
        for w in range(words):
            dst[i, w] = slots[s, w]
    store_release(ctrl, I_HEAD, head + k)
    return k


@numba.njit(**NJIT)
def spsc_depth(ctrl):
    """Records pushed and not yet popped (a snapshot; either side may move right after)."""
    head = load_acquire(ctrl, I_HEAD)
    return load_acquire(ctrl, I_TAIL) - head


@numba.njit(**NJIT)
def bcast_publish(ctrl, stamps, slots, src, n):
    """Writer: append ``n`` rows of ``src``; never waits for readers (it overwrites the oldest).
    Returns the new published cursor, ERR_SHAPE or ERR_LAYOUT."""
    if ctrl[H_VERSION] != VERSION:  # header word: written once, stays cached
        return ERR_LAYOUT
    words = slots.shape[1]
    if src.shape[1] != words:
        return ERR_SHAPE
    if n > src.shape[0]:
        n = src.shape[0]
    pos = ctrl[I_PUBLISHED]  # our own counter
    if n <= 0:
        return pos
    mask = slots.shape[0] - 1
    for i in range(n):
        p = pos + i
        s = p & mask
        store_release(stamps, s, 0)
        fence_release()  # the 0 stamp is visible before any word of the new record
        for w in range(words):
            slots[s, w] = src[i, w]
        store_release(stamps, s, p + 1)
    store_release(ctrl, I_PUBLISHED, pos + n)
    return pos + n


@numba.njit(**NJIT)
def bcast_read(ctrl, stamps, slots, cursor, dst, max_n):
    """Reader: copy whole records from position ``cursor`` on into ``dst``.

    Returns k >= 0: ``dst[:k]`` hold positions ``cursor .. cursor+k-1``, each verified untorn;
    the caller advances its cursor by k. Returns -m < 0: the reader was lapped and positions
    ``cursor .. cursor+m-1`` are lost (exactly: their slots were rewritten); nothing usable was
    copied. Returns ERR_SHAPE for a ``dst`` of the wrong width, ERR_LAYOUT (see above).
    """
    if ctrl[H_VERSION] != VERSION:  # header word: written once, stays cached
        return ERR_LAYOUT
    words = slots.shape[1]
    if dst.shape[1] != words:
        return ERR_SHAPE
    if max_n > dst.shape[0]:
        max_n = dst.shape[0]
    cap = slots.shape[0]
    mask = cap - 1
    published = load_acquire(ctrl, I_PUBLISHED)
    if published - cursor > cap:
        return -(published - cap - cursor)
    avail = published - cursor
    k = max_n if max_n < avail else avail
    got = 0
    for i in range(k):
        p = cursor + i
        s = p & mask
        s1 = load_acquire(stamps, s)
        if s1 != p + 1:
            break
        for w in range(words):
            dst[i, w] = slots[s, w]
        fence_acquire()  # the copy completes before the stamp is read again
        if load_acquire(stamps, s) != s1:
            break
        got += 1
    if got > 0 or k <= 0:
        return got
    # Position ``cursor`` was rewritten (or is being rewritten by position cursor + cap).
    m = load_acquire(ctrl, I_PUBLISHED) - cap - cursor
    return -(m if m > 1 else 1)


@numba.njit(**NJIT)
def cas_word(ctrl, idx, expected, new):
    """Compare-and-swap ``ctrl[idx]`` (Python-callable; used to claim single-writer roles)."""
    return cas(ctrl, idx, expected, new)


@numba.njit(**NJIT)
def load_word(ctrl, idx):
    """Acquire load of ``ctrl[idx]`` (Python-callable)."""
    return load_acquire(ctrl, idx)


def as_words(records: np.ndarray) -> np.ndarray:
    """The kernels' currency: a 2-D int64 view ``[n, itemsize // 8]`` of C-contiguous records.

    Never copies: a non-contiguous array is refused (a pop into a copy would lose the records).
    """
    if records.ndim != 1 or not records.flags.c_contiguous:
        raise ValueError("records must be a 1-D C-contiguous array (use np.ascontiguousarray)")
    if records.dtype.itemsize % 8:
        raise ValueError(f"record size must be a multiple of 8 bytes, got {records.dtype.itemsize}")
    return records.view(np.int64).reshape(records.shape[0], records.dtype.itemsize // 8)
