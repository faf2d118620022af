"""Processors: plain callables ``(event) -> event | None`` run by a router in order.

Raising :class:`EventEmissionExit` vetoes the event for the router's branch. The built-ins,
with their YAML short names: :class:`NameFilter` (``name_filter``), :class:`Redact`
(``redact``), :class:`Enrich` (``enrich``), :class:`SchemaValidator` (``schema``, needs the
``schema`` extra), :class:`Sample` (``sample``), :class:`Rename` (``rename``), and the
composable predicates :class:`NameMatches`, :class:`FieldEquals`, :class:`FieldExists`,
:class:`FieldMatches` (combine with ``&``, ``|``, ``^``, ``~``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventrouter.errors import EventEmissionExit
from eventrouter.processors.enrich import Enrich
from eventrouter.processors.filters import (
    And,
    FieldEquals,
    FieldExists,
    FieldMatches,
    NameFilter,
    NameMatches,
    Not,
    Or,
    Predicate,
    Xor,
)
from eventrouter.processors.redact import Redact
from eventrouter.processors.rename import Rename
from eventrouter.processors.sample import Sample

if TYPE_CHECKING:
    from eventrouter.processors.schema import SchemaValidator

__all__ = [
    "And",
    "Enrich",
    "EventEmissionExit",
    "FieldEquals",
    "FieldExists",
    "FieldMatches",
    "NameFilter",
    "NameMatches",
    "Not",
    "Or",
    "Predicate",
    "Redact",
    "Rename",
    "Sample",
    "SchemaValidator",
    "Xor",
]


def __getattr__(name: str) -> Any:
    # schema.py imports jsonschema only when a SchemaValidator is built; importing the module
    # lazily keeps `import eventrouter.processors` as light as the other processors.
    if name == "SchemaValidator":
        from eventrouter.processors.schema import SchemaValidator

        return SchemaValidator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
