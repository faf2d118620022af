"""Building: a user's class with ENGINE-dict children, one event-tracking class from its
constructor's arguments, and a tracker from a Django settings object."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from eventrouter._typecheck import Parameters
from eventrouter.config.migrate.positions import is_engine
from eventrouter.config.migrate.rows import ROWS
from eventrouter.config.migrate.walk import (
    ENGINE_CLASS,
    SETTINGS_BACKENDS,
    SETTINGS_DEAD_LETTER,
    SETTINGS_PROCESSORS,
    short_name,
)

if TYPE_CHECKING:
    from eventrouter.tracker import Tracker


class Engine:
    """Builds a class that event-tracking settings name by ``ENGINE`` and give ENGINE dicts
    under ``backends`` or ``processors``, as event-tracking did: its children are built
    first and passed in, if its constructor takes them (event-routing-backends'
    ``EventsRouter`` takes ``processors`` but no ``backends``).

    Calling ``Engine(...)`` returns the instance of ``engine``, not an ``Engine``. The
    configuration loader treats it as a router node, so the children are validated and
    built like any other node.

    Args:
        backends: the built ``backends`` children, by name.
        processors: the built ``processors`` children.
        engine: the dotted path of the class.
        options: its other options, passed as they are.
    """

    def __new__(
        cls,
        backends: Mapping[str, Any] | None = None,
        processors: list[Any] | None = None,
        *,
        engine: str,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        from eventrouter import registry

        target = registry.import_path(engine)
        if not callable(target):
            raise TypeError(f"{engine!r} is not a class or a callable")
        params = Parameters.of(target)
        kwargs = dict(options or {})
        for name, children in (("backends", backends), ("processors", processors)):
            if children and params is not None and (name in params.names or params.any_keyword):
                kwargs[name] = children
            elif children:
                raise TypeError(f"{engine!r} does not take {name}")
        return target(**kwargs)


def built_through_engine(class_name: str, options: Mapping[str, Any]) -> tuple[str, Any] | None:
    """For a node whose ``class`` is :class:`Engine`: the class it builds (its dotted path)
    and that class's own options; ``None`` for any other node."""
    engine = options.get("engine")
    if class_name != ENGINE_CLASS or not isinstance(engine, str) or not engine:
        return None
    return engine, options.get("options") or {}


def build_engine(engine: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build what event-tracking's ``ENGINE`` class built from ``options``, as ours.

    event-tracking's routers take their children as objects (or ENGINE dicts); its other
    classes are translated by their row and built by the configuration loader. A refusal
    event-tracking's constructor also made raises the exception it raised.

    Raises:
        ConfigError: the options are refused. Where event-tracking's constructor refused
            them too, the error is also an instance of the exception it raised (e.g.
            ``TypeError`` for a whitelist that is ``None``).
        TypeError, ValueError: event-tracking's router refused its children or options.
    """
    from eventrouter.config import load

    # An iterator (a whitelist may be one) is read once here: the settings are read twice.
    given = {k: list(v) if isinstance(v, Iterator) else v for k, v in (options or {}).items()}
    row = ROWS.get(engine)
    if row is not None and row.target == "router":
        from eventrouter.backends.routing import RoutingBackend

        unknown = set(given) - set(row.options)
        if unknown:
            raise TypeError(f"{short_name(engine)} has no option {sorted(unknown)[0]!r}")
        backends, processors = _objects(given.get("backends")), _objects(given.get("processors"))
        _check_children(backends or {}, processors or [])
        return RoutingBackend(backends, processors)
    node = {"ENGINE": engine, "OPTIONS": given}
    if row is not None and row.kind == "processor":
        settings: dict[str, Any] = {SETTINGS_BACKENDS: {}, SETTINGS_PROCESSORS: [node]}
    else:
        settings = {SETTINGS_BACKENDS: {"default": node}}
    tracker = load(settings)
    if row is not None and row.kind == "processor":
        return tracker.processors[0]
    return tracker.get_backend("default")


def _check_children(backends: Mapping[Any, Any], processors: Iterable[Any]) -> None:
    """Refuse what event-tracking's RoutingBackend refused, with its messages."""
    for backend in backends.values():
        if not callable(getattr(backend, "send", None)):
            name = type(backend).__name__
            raise ValueError(f'Backend {name} does not have a callable "send" method.')
    for processor in processors:
        if not callable(processor):
            raise ValueError(f"Processor {type(processor).__name__} is not callable.")


def _objects(children: Any) -> Any:
    """``children`` with every ENGINE dict among them built (see :func:`build_engine`)."""
    if isinstance(children, Mapping):
        return {
            name: build_engine(c["ENGINE"], c.get("OPTIONS")) if is_engine(c) else c
            for name, c in children.items()
        }
    if isinstance(children, list | tuple):
        return [
            build_engine(c["ENGINE"], c.get("OPTIONS")) if is_engine(c) else c for c in children
        ]
    return children


def load_settings(
    settings: Any,
    *,
    dead_letter: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Tracker:
    """Build a :class:`~eventrouter.tracker.Tracker` from Django settings written for
    event-tracking, as its ``DjangoTracker`` did.

    Reads ``EVENT_TRACKING_BACKENDS`` (default ``{}``), ``EVENT_TRACKING_PROCESSORS``
    (default ``[]``) and ``EVENTROUTER_DEAD_LETTER`` (default none) from ``settings``:
    ``django.conf.settings``, a settings module, any object with those attributes, or a
    mapping with those keys::

        from django.conf import settings
        tracker.register_tracker(eventrouter.load_settings(settings))

    Args:
        settings: where to read the settings from.
        dead_letter: the dead-letter file (its path) for every node that takes one: events
            a MongoDB or Segment node gives up on, and events a log drops as oversize, are
            written there instead of being lost. Overrides ``EVENTROUTER_DEAD_LETTER``.
        env: the variables ``${VAR}`` expands from; defaults to ``os.environ``.

    Raises:
        ConfigError: the settings are invalid; every problem is listed with its settings path.
    """
    from eventrouter.config import load

    if isinstance(settings, Mapping):
        read: Any = settings.get
    else:
        read = functools.partial(getattr, settings)
    data: dict[str, Any] = {
        SETTINGS_BACKENDS: read(SETTINGS_BACKENDS, {}),
        SETTINGS_PROCESSORS: read(SETTINGS_PROCESSORS, []),
    }
    chosen = dead_letter if dead_letter is not None else read(SETTINGS_DEAD_LETTER, None)
    if chosen is not None:
        data[SETTINGS_DEAD_LETTER] = chosen
    tracker: Tracker = load(data, env=env)
    return tracker
