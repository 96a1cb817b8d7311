"""The one place that sets numba options for the engine kernels (CONVENTIONS.md habit 1).

``cache=True`` (compiled code is kept next to the modules in ``__pycache__``), ``nogil=True`` (a
flusher thread can run beside the engine loop), ``boundscheck`` off unless the environment says
``SPOTX_NUMBA_BOUNDSCHECK=1`` — a debug test run then turns every out-of-range index into an
IndexError instead of memory corruption. ``error_model="numpy"``: integer division by zero is not
checked per operation (the kernels never divide by a value that can be zero).

Cache invalidation. numba keys a cached function on its own source file only, but the kernels
inline each other across modules and read constants from ``layout.py``: after editing
``_match_kernels.py`` the cached ``_batch.apply_batch`` would still run the old matching code (seen
here). ``_EngineCacheLocator`` stamps every engine kernel's cache entry with the digest of *all*
kernel sources (``KERNEL_FILES``), so any edit, deploy or checkout recompiles them all.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numba
from numba.core import caching

BOUNDSCHECK = os.environ.get("SPOTX_NUMBA_BOUNDSCHECK", "") == "1"
OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "boundscheck": BOUNDSCHECK,
                           "error_model": "numpy", "_nrt": False}

ENGINE_DIR = Path(__file__).resolve().parent
KERNEL_FILES = sorted([*ENGINE_DIR.glob("_*.py"), ENGINE_DIR / "fees.py", ENGINE_DIR / "layout.py"])


def _kernel_digest() -> bytes:
    h = hashlib.sha256(f"boundscheck={BOUNDSCHECK}".encode())
    for p in KERNEL_FILES:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.digest()


KERNEL_DIGEST = _kernel_digest()


class _EngineCacheLocator(caching.InTreeCacheLocator):
    """In-tree cache for engine kernels, stamped with the digest of every kernel source."""

    def get_source_stamp(self) -> Any:
        return KERNEL_DIGEST

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if Path(py_file).resolve().parent != ENGINE_DIR:
            return None
        return super().from_function(py_func, py_file)


if _EngineCacheLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, _EngineCacheLocator)

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """``numba.njit`` with the engine's options."""
    return numba.njit(**OPTIONS)(fn)


def kernel_inline(fn: F) -> F:
    """``kernel`` inlined into its callers by numba itself (``inline="always"``). For the handlers
    that take the whole ``State``: a call passes every array of it flattened (~170 machine words),
    which cost more than the handler's own work on the common path."""
    return numba.njit(inline="always", **OPTIONS)(fn)
