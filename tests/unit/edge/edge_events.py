"""Test helper: EVENT records built field by field, decoded like the gateway does."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.recio import EvT, unpack_events
from pipeline.records import EVENT, cid_encode


def ev(kind: int, **fields: Any) -> EvT:
    arr = np.zeros(1, EVENT)
    for k, v in fields.items():
        arr[0][k] = cid_encode(v) if k == "cid" else v
    arr[0]["kind"] = kind
    return unpack_events(arr)[0]
