"""Shared test fixtures: where the real EM data lives, and tiny models on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(TESTS))


def shared_data(*parts: str) -> Path:
    """Path to a real dataset under ../shared/data, skipping the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real EM data {p} is not present (see ../shared/data/README.md)")
    return p
