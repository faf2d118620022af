"""The integration pages' examples run as written (each page in a fresh interpreter, since
Django's settings and the tracker registry are process-wide)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs" / "integrations"
PAGES = ["django.md", "flask.md", "asgi.md", "celery.md"]
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def runnable_blocks(page: Path) -> list[str]:
    """The ```python blocks of a page (blocks marked title="illustration" are not matched)."""
    return BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_examples_run(page: str, tmp_path: Path) -> None:
    blocks = runnable_blocks(DOCS / page)
    assert blocks, f"{page} has no runnable example"
    for number, block in enumerate(blocks, 1):
        result = subprocess.run(
            [sys.executable, "-c", block],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 0, f"{page} block {number}:\n{result.stderr}"
