"""The whole stack as `spotx up` starts it, on ephemeral ports and a throw-away data dir."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stackutil import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(tmp_path_factory.mktemp("stack"))
    st.start()
    try:
        yield st
    finally:
        st.sup.stop()
