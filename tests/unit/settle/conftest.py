"""Shared fixtures for the settle unit tests."""

from __future__ import annotations

import pytest

from pipeline import config
from settle.catalog import Catalog


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.from_config(config.load(env={}))
