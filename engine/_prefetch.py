# mypy: ignore-errors
"""``prefetch(arr, i)``: ask the CPU to bring ``arr[i]``'s cache line in (``llvm.prefetch``, read,
high locality). A hint only: no effect on results. ``apply_batch`` issues one per command of a
batch for the map entry that command will probe (cid map for new orders with a cid, id map for
cancels by id), so the batch's cache misses overlap instead of being paid one after another.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.core.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, idx):
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        raise TypingError(f"prefetch needs an array and an integer index, got {arr}, {idx}")

    def codegen(context, builder, sig, args):
        aryty, idxty = sig.args
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [i], wraparound=False)
        p8 = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [p8.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [p8, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen
