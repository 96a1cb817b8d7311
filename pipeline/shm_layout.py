"""Names and ownership of the stack's shared-memory segments (see ringbuf/README.md).

    spotx-<instance>-cmd-<e>   SPSC COMMAND ring, edge e -> engine      (capacity engine.ring_capacity)
    spotx-<instance>-adm-<e>   SPSC ADMIN ring, edge e -> engine        (capacity 1024)
    spotx-<instance>-adm-settle SPSC ADMIN ring, settle -> engine        (settlement-lag policy)
    spotx-<instance>-md        broadcast ring, publisher -> fan-out     (capacity market.broadcast_capacity)

The supervisor creates them all before any child starts (``create_all``) and unlinks them after the
last child exited (``unlink_all``); ``cleanup_stale`` removes leftovers of a crashed run. Children
attach by name and never unlink.
"""

from __future__ import annotations

from pipeline.config import Config
from pipeline.records import ADMIN, COMMAND

ADMIN_RING_CAPACITY = 1024


def prefix(cfg: Config) -> str:
    return f"spotx-{cfg.instance}-"


def cmd_ring(cfg: Config, edge: int) -> str:
    return f"{prefix(cfg)}cmd-{edge}"


def admin_ring(cfg: Config, edge: int) -> str:
    return f"{prefix(cfg)}adm-{edge}"


def settle_admin_ring(cfg: Config) -> str:
    return f"{prefix(cfg)}adm-settle"


def md_ring(cfg: Config) -> str:
    return f"{prefix(cfg)}md"


def cleanup_stale(cfg: Config) -> list[str]:
    from ringbuf import cleanup

    return list(cleanup(prefix(cfg)))


def create_all(cfg: Config) -> None:
    from ringbuf import SpscRing

    for e in range(1, cfg.edge.processes + 1):
        SpscRing.create(cmd_ring(cfg, e), COMMAND, cfg.engine.ring_capacity).close()
        SpscRing.create(admin_ring(cfg, e), ADMIN, ADMIN_RING_CAPACITY).close()
    SpscRing.create(settle_admin_ring(cfg), ADMIN, ADMIN_RING_CAPACITY).close()


def unlink_all(cfg: Config) -> None:
    from ringbuf import cleanup

    cleanup(prefix(cfg))
