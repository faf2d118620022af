"""The package as users install it: typed, importable without optional extras."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import eventrouter


def test_package_is_marked_typed() -> None:
    assert (Path(eventrouter.__file__).parent / "py.typed").is_file()


def test_public_api_is_reexported_at_top_level() -> None:
    for name in eventrouter.__all__:
        assert getattr(eventrouter, name) is not None, name


@pytest.mark.slow
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


@pytest.mark.slow
def test_version_comes_from_the_installed_metadata() -> None:
    code = (
        "import importlib.metadata as m\n"
        "m.version = lambda name: '9.8.7' if name == 'eventrouter' else None\n"
        "import eventrouter\n"
        "print(eventrouter.__version__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "9.8.7"


def test_load_is_typed_to_return_a_tracker() -> None:
    from eventrouter.config import build, load

    assert typing.get_type_hints(load)["return"] is eventrouter.Tracker
    assert typing.get_type_hints(build)["return"] is eventrouter.Tracker


PUBLIC_MODULES = [
    "eventrouter.config",
    "eventrouter.config.build",
    "eventrouter.config.expand",
    "eventrouter.config.model",
    "eventrouter.config.options",
    "eventrouter.config.read",
    "eventrouter.config.secrets",
    "eventrouter.config.validate",
    "eventrouter.errors",
    "eventrouter.registry",
    "eventrouter.typing",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_class_and_function_is_listed_and_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module_name
    }
    assert defined <= set(module.__all__), "public but not in __all__"
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
