"""The package as users install it: typed, importable without optional extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import eventrouter


def test_package_is_marked_typed() -> None:
    assert (Path(eventrouter.__file__).parent / "py.typed").is_file()


def test_public_api_is_reexported_at_top_level() -> None:
    for name in eventrouter.__all__:
        assert getattr(eventrouter, name) is not None, name


def test_importing_eventrouter_does_not_import_optional_integrations() -> None:
    code = (
        "import sys, eventrouter, eventrouter.tracker\n"
        "heavy = {'pymongo', 'segment', 'celery', 'jsonschema'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
