"""Shared test fixtures: where the real EM data lives, and tiny models on the import path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# The real EM data: $VEMCELL_DATA, else the team's shared folder beside the checkout.
SHARED_DATA = Path(os.environ.get("VEMCELL_DATA") or REPO.parent / "shared" / "data")
os.environ.setdefault("VEMCELL_DATA", str(SHARED_DATA))  # the training recipes read it
sys.path.insert(0, str(TESTS))


def shared_data(*parts: str) -> Path:
    """Path to a real dataset under ../shared/data, skipping the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real EM data {p} is not present (set VEMCELL_DATA; see docs)")
    return p
