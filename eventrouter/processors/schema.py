"""SchemaValidator: check events against JSON Schemas chosen by event name.

Needs the ``jsonschema`` package: ``pip install 'eventrouter[schema]'``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

from eventrouter._options import refusing
from eventrouter.errors import EventEmissionExit, MissingExtraError, OptionError, OptionTypeError
from eventrouter.paths import MISSING, format_path, get_path, parse_path, set_path
from eventrouter.patterns import NamePattern
from eventrouter.typing import Event

__all__ = ["MAX_ERRORS", "ON_INVALID", "SchemaValidator"]

logger = logging.getLogger(__name__)

ON_INVALID = ("drop", "tag", "pass")
"""The accepted values of ``on_invalid``."""

MAX_ERRORS = 20
"""At most this many errors are recorded on an event by ``on_invalid="tag"``."""

_CACHE_SIZE = 1024


class SchemaValidator:
    """Validate a part of each event (``data`` by default) against JSON Schemas.

    YAML short name ``schema``. ``schemas`` maps name patterns (:mod:`eventrouter.patterns`)
    to JSON Schemas; an event is checked against every schema whose pattern matches its name
    (an event no pattern matches is passed on unchecked: add ``"#"`` for a catch-all). The
    schema dialect is taken from its ``$schema`` (draft 2020-12 when absent); ``format`` is
    checked for the formats ``jsonschema`` supports.

    What happens to an invalid event depends on ``on_invalid``:

    - ``"drop"`` (default): it is vetoed (counted by the router as ``vetoed``, not logged);
    - ``"tag"``: it is kept, with a list of error strings set at ``tag_path`` (default
      ``context.schema_errors``), at most :data:`MAX_ERRORS`, each
      ``"<path>: <rule> <expected>"`` such as ``'data.age: type "integer"'`` or
      ``'data: required ["user_id"]'``. The strings hold the schema's words, never the
      event's values (so redacting the event later leaves nothing behind);
    - ``"pass"``: it is kept unchanged and a warning names its ``name``, ``id`` and the
      number of errors.

    Schemas are checked and compiled at construction.

    Args:
        schemas: name pattern -> JSON Schema (a mapping).
        on_invalid: ``"drop"``, ``"tag"`` or ``"pass"``.
        path: the dotted path of the value validated (``data``); a missing value is invalid.
        tag_path: where ``"tag"`` records the errors.

    Raises:
        MissingExtraError: ``jsonschema`` is not installed.
        OptionError: a schema is not a valid JSON Schema, a pattern or path is invalid, or
            ``on_invalid`` is not one of the three values (a :class:`ValueError` naming the
            option and the entry).
        OptionTypeError: a schema is not a mapping (also a :class:`TypeError`).
    """

    __slots__ = ("_cache", "_entries", "_path", "_tag_path", "on_invalid")

    def __init__(
        self,
        schemas: Mapping[str, Mapping[str, Any]],
        on_invalid: Literal["drop", "tag", "pass"] = "drop",
        path: str = "data",
        tag_path: str = "context.schema_errors",
    ) -> None:
        try:
            import jsonschema.validators
        except ImportError:
            raise MissingExtraError("the schema processor", "schema", "jsonschema") from None
        if on_invalid not in ON_INVALID:
            raise OptionError(
                "on_invalid",
                f"on_invalid must be one of {', '.join(map(repr, ON_INVALID))}, not {on_invalid!r}",
            )
        if not isinstance(schemas, Mapping):
            raise OptionTypeError(
                "schemas", f"schemas must map name patterns to schemas, not {type(schemas)}"
            )
        entries: list[tuple[NamePattern, Any]] = []
        for pattern, schema in schemas.items():
            if not isinstance(schema, Mapping):
                raise OptionTypeError(
                    "schemas",
                    f"the schema for {pattern!r} must be a mapping, not {type(schema).__name__}",
                    where=(pattern,),
                )
            with refusing("schemas", pattern):
                name_pattern = NamePattern(pattern)
            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.exceptions.SchemaError as exc:
                where = format_path(list(exc.absolute_path)) or "its root"
                raise OptionError(
                    "schemas",
                    f"the schema for {pattern!r} is not a valid JSON Schema ({where}): "
                    f"{exc.message}",
                    where=(pattern, *exc.absolute_path),
                ) from None
            entries.append((name_pattern, cls(schema, format_checker=cls.FORMAT_CHECKER)))
        self._entries: tuple[tuple[NamePattern, Any], ...] = tuple(entries)
        with refusing("path"):
            self._path = parse_path(path)
        with refusing("tag_path"):
            self._tag_path = parse_path(tag_path)
        self._cache: dict[str, tuple[Any, ...]] = {}
        self.on_invalid = on_invalid

    def _validators(self, name: object) -> tuple[Any, ...]:
        if not isinstance(name, str):
            return ()
        found = self._cache.get(name)
        if found is None:
            found = tuple(
                validator for pattern, validator in self._entries if pattern.matches(name)
            )
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[name] = found
        return found

    def __call__(self, event: Event) -> Event:
        """Validate ``event``; return it (tagged if asked) or veto it.

        Raises:
            EventEmissionExit: the event is invalid and ``on_invalid`` is ``"drop"``.
        """
        validators = self._validators(event.get("name"))
        if not validators:
            return event
        instance = get_path(event, self._path)
        if self.on_invalid == "drop":
            if instance is MISSING or not all(v.is_valid(instance) for v in validators):
                raise EventEmissionExit("invalid against its JSON Schema")
            return event
        errors = self._errors(instance, validators)
        if not errors:
            return event
        if self.on_invalid == "tag":
            set_path(event, self._tag_path, errors)
        else:
            logger.warning(
                "event %r (id %r) is invalid against its JSON Schema: %d error(s); passed on",
                event.get("name"),
                event.get("id"),
                len(errors),
            )
        return event

    def _errors(self, instance: Any, validators: tuple[Any, ...]) -> list[str]:
        if instance is MISSING:
            return [f"{format_path(self._path)}: missing"]
        base = [segment.key for segment in self._path]
        errors: list[str] = []
        for validator in validators:
            for error in validator.iter_errors(instance):
                where = format_path([*base, *error.absolute_path])
                expected = json.dumps(error.validator_value, default=str, sort_keys=True)
                if len(expected) > 200:
                    expected = expected[:197] + "..."
                errors.append(f"{where}: {error.validator} {expected}")
                if len(errors) >= MAX_ERRORS:
                    return errors
        return errors

    def __repr__(self) -> str:
        patterns = [pattern.text for pattern, _ in self._entries]
        return f"SchemaValidator(<{', '.join(patterns)}>, on_invalid={self.on_invalid!r})"
