# mypy: ignore-errors
"""Atomic loads/stores, compare-and-swap and fences for numba code over shared memory.

Why: in a numba spin loop a plain ``arr[i]`` load may be hoisted out of the loop by LLVM (it
cannot see another process writing) and the loop never ends: a prototype consumer hung here, and
``tests/unit/ringbuf/test_atomics.py`` reproduces it. An acquire load cannot be hoisted and orders
every later load/store after it; a release store orders every earlier load/store before it. On
x86-64 (TSO) both compile to plain ``mov``: they cost nothing but the compiler's freedom.

API — numba intrinsics, callable only from ``@njit`` code, on int64 / uint64 arrays of any layout
(the element must be 8-byte aligned, which every ring and stats array is):

    load_acquire(arr, i) -> arr.dtype            acquire load of arr[i]
    store_release(arr, i, value) -> None         release store into arr[i] (value cast to dtype)
    cas(arr, i, expected, new) -> arr.dtype      seq_cst compare-and-swap; returns the old value
                                                 (the swap happened iff old == expected)
    fence_acquire() -> None                      earlier loads before later loads and stores
    fence_release() -> None                      earlier loads and stores before later stores

Usage from another package (the engine)::

    from ringbuf import load_acquire, store_release

    @numba.njit(cache=True)
    def wait_for(flag):               # flag: np.int64 view into shared memory
        while load_acquire(flag, 0) == 0:
            pass

Limits: indices are not bounds-checked; the intrinsics do no wraparound for negative indices.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.core.extending import intrinsic

_WORD = (types.int64, types.uint64)


def _check(arr, idx) -> None:
    if not isinstance(arr, types.Array) or arr.dtype not in _WORD:
        raise TypingError(f"ringbuf atomics need an int64/uint64 array, got {arr}")
    if not isinstance(idx, types.Integer):
        raise TypingError(f"ringbuf atomics need an integer index, got {idx}")


def _ptr(context, builder, aryty, ary_val, idxty, idx_val):
    ary = context.make_array(aryty)(context, builder, ary_val)
    idx = context.cast(builder, idx_val, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)


@intrinsic
def load_acquire(typingctx, arr, idx):
    _check(arr, idx)

    def codegen(context, builder, sig, args):
        ptr = _ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return arr.dtype(arr, idx), codegen


@intrinsic
def store_release(typingctx, arr, idx, val):
    _check(arr, idx)
    if not isinstance(val, types.Integer):
        raise TypingError(f"store_release needs an integer value, got {val}")

    def codegen(context, builder, sig, args):
        aryty, idxty, valty = sig.args
        ptr = _ptr(context, builder, aryty, args[0], idxty, args[1])
        builder.store_atomic(context.cast(builder, args[2], valty, aryty.dtype), ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, idx, val), codegen


@intrinsic
def cas(typingctx, arr, idx, expected, new):
    _check(arr, idx)
    if not (isinstance(expected, types.Integer) and isinstance(new, types.Integer)):
        raise TypingError("cas needs integer expected/new values")

    def codegen(context, builder, sig, args):
        aryty, idxty, ety, nty = sig.args
        ptr = _ptr(context, builder, aryty, args[0], idxty, args[1])
        e = context.cast(builder, args[2], ety, aryty.dtype)
        n = context.cast(builder, args[3], nty, aryty.dtype)
        pair = builder.cmpxchg(ptr, e, n, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return arr.dtype(arr, idx, expected, new), codegen


def _fence(ordering: str):
    @intrinsic
    def fence(typingctx):
        def codegen(context, builder, sig, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


fence_acquire = _fence("acquire")
fence_release = _fence("release")

__all__ = ["cas", "fence_acquire", "fence_release", "load_acquire", "store_release"]
