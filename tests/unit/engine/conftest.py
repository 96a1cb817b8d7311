"""Fixtures for engine unit tests (helpers live in engine_helpers.py)."""

from __future__ import annotations

import pytest
from engine_helpers import funded

from engine import Engine
from engine.testing import small_config
from pipeline.config import Config


@pytest.fixture
def cfg() -> Config:
    return small_config()


@pytest.fixture
def eng(cfg: Config) -> Engine:
    return funded(cfg)
