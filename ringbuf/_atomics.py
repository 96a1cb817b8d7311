# mypy: ignore-errors
"""Acquire loads, release stores and fences for numba code over shared memory.

Why: inside a numba spin loop a plain ``arr[i]`` load may be hoisted out of the loop by LLVM (it
cannot see the other process writing), and the loop never ends — this hung a prototype here. An
atomic load with acquire ordering cannot be hoisted and orders every later load after it; a store
with release ordering orders every earlier store before it. On x86-64 both compile to plain
``mov`` instructions (TSO), so they cost nothing but the compiler's freedom to reorder.

API (all njit-callable, on C-contiguous int64 or uint64 arrays):
    load_acquire(arr, i) -> element
    store_release(arr, i, value)
    fence_acquire()   # LoadLoad|LoadStore: earlier loads complete before later loads/stores
    fence_release()   # LoadStore|StoreStore: earlier stores complete before later stores
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic


def _check(arr: Any) -> None:
    if not isinstance(arr, types.Array) or arr.dtype not in (types.int64, types.uint64):
        raise TypeError("atomics operate on int64 / uint64 arrays")


@intrinsic
def load_acquire(typingctx: Any, arr: Any, idx: Any) -> Any:  # noqa: ARG001
    _check(arr)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        aryty, _ = sig.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        return builder.load_atomic(ptr, "acquire", 8)

    return arr.dtype(arr, idx), codegen


@intrinsic
def store_release(typingctx: Any, arr: Any, idx: Any, val: Any) -> Any:  # noqa: ARG001
    _check(arr)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        aryty, _, valty = sig.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        v = context.cast(builder, args[2], valty, aryty.dtype)
        builder.store_atomic(v, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, idx, val), codegen


def _fence(ordering: str) -> Any:
    @intrinsic
    def fence(typingctx: Any) -> Any:  # noqa: ARG001
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


fence_acquire = _fence("acquire")
fence_release = _fence("release")

__all__ = ["load_acquire", "store_release", "fence_acquire", "fence_release", "ir"]
