# mypy: ignore-errors
"""Waiting inside numba loops (the engine's own drain loop, the bench): the njit side of the
wait strategies in ``wait.py``.

    cpu_pause()            x86 ``pause``: a polite spin (cheaper for the sibling hyper-thread and
                           the memory bus); a no-op on other targets
    sched_yield()          libc ``sched_yield()``: give the core to another runnable process
    idle(attempt, spins)   spin-then-yield: ``cpu_pause`` for the first ``spins`` empty polls,
                           then ``sched_yield`` — SpinThenYield for njit code

``sched_yield`` is linked by symbol name, so functions using it stay cacheable (``cache=True``),
unlike a ctypes function pointer. On this 2-core box a pure busy-spin loop next to a third
runnable process wastes whole time slices; ``idle`` hands them over.
"""

from __future__ import annotations

import platform

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from ringbuf._kernels import NJIT

_X86 = platform.machine() in ("x86_64", "AMD64", "i686")


@intrinsic
def cpu_pause(typingctx):
    def codegen(context, builder, sig, args):
        if _X86:
            fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(
                ir.VoidType(), []))
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def sched_yield(typingctx):
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@numba.njit(**NJIT)
def idle(attempt, spins):
    """Call after the ``attempt``-th consecutive empty poll (0-based); reset on progress."""
    if attempt < spins:
        cpu_pause()
    else:
        sched_yield()
