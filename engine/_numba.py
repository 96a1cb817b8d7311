"""The one place that sets numba options for the engine kernels (CONVENTIONS.md habit 1).

``cache=True`` (compiled code is kept next to the modules in ``__pycache__``), ``nogil=True`` (a
flusher thread can run beside the engine loop), ``boundscheck`` off unless the environment says
``SPOTX_NUMBA_BOUNDSCHECK=1`` — a debug test run then turns every out-of-range index into an
IndexError instead of memory corruption. ``error_model="numpy"``: integer division by zero is not
checked per operation (the kernels never divide by a value that can be zero).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import numba

BOUNDSCHECK = os.environ.get("SPOTX_NUMBA_BOUNDSCHECK", "") == "1"
OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "boundscheck": BOUNDSCHECK,
                           "error_model": "numpy"}

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """``numba.njit`` with the engine's options."""
    return numba.njit(**OPTIONS)(fn)
