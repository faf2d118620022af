"""Every runnable ``python`` block of docs/metrics.md runs as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import python_blocks

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
BLOCKS = python_blocks(DOC)


def test_the_page_has_runnable_blocks() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_block_runs(number: int) -> None:
    exec(compile(BLOCKS[number], f"{DOC.name} block {number + 1}", "exec"), {})


def test_the_dashboard_picture_is_there() -> None:
    assert (DOC.parent / "img" / "metrics-dashboard.png").stat().st_size > 10_000
