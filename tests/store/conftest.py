"""The store fixture: every store test runs on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from churnguard.store.scores import ScoreStore
from tests.factories import BACKENDS, open_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScoreStore]:
    with open_store(request.param, tmp_path) as store:
        yield store
