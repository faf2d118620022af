"""Make ``eventtracking.*`` resolve to eventrouter while event-tracking's own tests run.

event-tracking 4.0.2 is installed (the ``test`` extra) and its wheel ships its tests. Its
classes are replaced, for as long as :func:`installed` is active, by factories that build
ours through the migration layer (:func:`eventrouter.config.migrate.build_engine`) from the same
arguments; ``eventtracking.tracker`` becomes a module exposing our tracker API. The rest
of the package (exceptions, test helpers) stays event-tracking's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import types
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import eventtracking

from eventrouter import event as _event
from eventrouter import tracker as our_tracker
from eventrouter.config import migrate as _migrate

UPSTREAM = Path(eventtracking.__file__).parent

#: The MongoDB server event-tracking's MongoBackend connects to when given no ``host``
#: (upstream's tests expect one on localhost:27017; ours start one on a free port).
mongo_host: dict[str, str] = {}

CLASSES = (
    "eventtracking.backends.routing.RoutingBackend",
    "eventtracking.backends.async_routing.AsyncRoutingBackend",
    "eventtracking.backends.logger.LoggerBackend",
    "eventtracking.backends.mongodb.MongoBackend",
    "eventtracking.backends.segment.SegmentBackend",
    "eventtracking.processors.whitelist.NameWhitelistProcessor",
    "eventtracking.processors.regex_filter.RegexFilter",
)


def _upstream_signature(engine: str) -> inspect.Signature | None:
    """The constructor signature of event-tracking's class (importing its module needs
    its optional dependencies, e.g. pymongo; ``None`` when it cannot be imported)."""
    module, _, name = engine.rpartition(".")
    try:
        return inspect.signature(getattr(importlib.import_module(module), name))
    except ImportError:
        return None


def factory(engine: str) -> Callable[..., Any]:
    """A stand-in for event-tracking's class ``engine``: called with the arguments the
    class took, it returns ours, built through the migration layer."""
    signature = _upstream_signature(engine)

    def build(*args: Any, **kwargs: Any) -> Any:
        options = dict(kwargs)
        if signature is not None:
            bound = signature.bind(*args, **kwargs)
            options = {}
            for name, value in bound.arguments.items():
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    options.update(value)
                else:
                    options[name] = value
        if engine.endswith(".MongoBackend") and "host" not in options and mongo_host:
            options["host"] = mongo_host["uri"]
        return _migrate.build_engine(engine, options)

    build.__name__ = build.__qualname__ = engine.rpartition(".")[2]
    return build


def _tracker_module() -> types.ModuleType:
    module = types.ModuleType("eventtracking.tracker")
    for name in ("Tracker", "register_tracker", "get_tracker", "emit"):
        setattr(module, name, getattr(our_tracker, name))
    module.datetime = datetime  # type: ignore[attr-defined]  # upstream's tests patch it
    module.DEFAULT_TRACKER_NAME = "default"  # type: ignore[attr-defined]
    return module


def _modules() -> dict[str, types.ModuleType]:
    modules: dict[str, types.ModuleType] = {"eventtracking.tracker": _tracker_module()}
    for engine in CLASSES:
        module_name, _, name = engine.rpartition(".")
        module = modules.setdefault(module_name, types.ModuleType(module_name))
        setattr(module, name, factory(engine))
    regex = modules["eventtracking.processors.regex_filter"]
    regex.ALLOWLIST, regex.BLOCKLIST = "allowlist", "blocklist"  # type: ignore[attr-defined]
    return modules


@contextmanager
def installed() -> Iterator[None]:
    """Let ``eventtracking.<module>`` of every translated class resolve to the shim."""
    saved_modules: dict[str, Any] = {}
    saved_attributes: list[tuple[Any, str, Any]] = []
    missing = object()
    for name, module in _modules().items():
        saved_modules[name] = sys.modules.get(name, missing)
        sys.modules[name] = module
        parent_name, _, child = name.rpartition(".")
        parent = importlib.import_module(parent_name)
        saved_attributes.append((parent, child, getattr(parent, child, missing)))
        setattr(parent, child, module)
    # Upstream's tests freeze the clock by patching ``eventtracking.tracker.datetime``: let
    # our envelope read the time through that name while the shim is installed.
    tracker_module = sys.modules["eventtracking.tracker"]
    saved_now = _event._now

    def frozen_now(tz: Any) -> Any:  # looked up at each call: the test patches it later
        return tracker_module.datetime.now(tz)

    _event._now = frozen_now
    try:
        yield
    finally:
        _event._now = saved_now
        for parent, child, value in saved_attributes:
            if value is missing:
                delattr(parent, child)
            else:
                setattr(parent, child, value)
        for name, previous in saved_modules.items():
            if previous is missing:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _django_test_stand_in() -> types.ModuleType:
    """``django.test`` for upstream tests that use Django's ``TestCase`` only as a base
    class (no database, no settings)."""
    module = types.ModuleType("django.test")
    module.TestCase = unittest.TestCase  # type: ignore[attr-defined]
    return module


def load(relative: str) -> dict[str, Any]:
    """The ``TestCase`` classes of event-tracking's test module at ``relative`` (inside
    the installed package), imported with the shim installed."""
    path = UPSTREAM / relative
    name = "eventtracking_compat.upstream." + relative.replace("/", ".").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("django.test")
    sys.modules["django.test"] = _django_test_stand_in()
    try:
        with installed():
            spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("django.test", None)
        else:
            sys.modules["django.test"] = saved
    return {
        key: value
        for key, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, unittest.TestCase)
        and value.__module__ == name
    }
