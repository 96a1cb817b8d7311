# mypy: ignore-errors
"""Batch drivers: apply a whole command array in batches from compiled code (no Python per batch).

``drive`` is what a replay or a bench needs: it calls ``apply_batch`` on ``cmds`` in batches of
``batch`` commands (resuming after FULL), reusing one ``out`` buffer, and returns the events
produced. When ``lat`` is non-empty it also records each batch's duration in TSC cycles
(``llvm.readcyclecounter``) into ``lat[k]`` — measuring only, it never feeds the state, so
determinism holds. Lives in ``engine/`` so the kernel cache stamp covers it (it links the kernels).
"""

from __future__ import annotations

from numba import types
from numba.core.extending import intrinsic

from engine._batch import apply_batch
from engine._numba import kernel


@intrinsic
def _rdtsc(typingctx):
    def codegen(context, builder, sig, args):
        from llvmlite import ir

        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])

    return types.int64(), codegen


@kernel
def rdtsc():
    return _rdtsc()


@kernel
def drive(st, cmds, n, batch, seq0, ts_ns, out, info, lat):
    """Apply ``cmds[:n]`` from ``seq0`` in batches; returns the number of events produced (or -1
    on a seq error). ``info[2]`` = batches run; ``lat[k]`` = cycles of batch k when recording."""
    total = 0
    i = 0
    k = 0
    record = lat.shape[0] > 0
    while i < n:
        m = n - i if n - i < batch else batch
        t0 = rdtsc() if record else 0
        ne = apply_batch(st, cmds[i:i + m], m, seq0 + i, ts_ns, out, info)
        if record and k < lat.shape[0]:
            lat[k] = rdtsc() - t0
        if info[1] < 0:
            return -1
        total += ne
        i += info[0]
        k += 1
    info[2] = k
    return total
