"""Every exception eventrouter raises, each saying what to do next."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "DeliveryError",
    "EventEmissionExit",
    "EventRouterError",
    "MissingExtraError",
    "TrackerNotRegisteredError",
    "is_veto",
]


class EventRouterError(Exception):
    """Base class of the errors eventrouter raises itself."""


_EVENT_TRACKING_VETO_MODULE = "eventtracking.processors.exceptions"


def _event_tracking_veto() -> type[Exception] | None:
    """event-tracking's own ``EventEmissionExit`` when event-tracking is installed, else None.

    Nothing is imported when event-tracking is absent, and a broken installation counts as
    absent.
    """
    try:
        if importlib.util.find_spec("eventtracking") is None:
            return None
        module = importlib.import_module(_EVENT_TRACKING_VETO_MODULE)
    except Exception:
        return None
    found = getattr(module, "EventEmissionExit", None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None


# event-tracking's ``EventEmissionExit`` class, or ``None`` when event-tracking is not
# installed (then its vetoes are recognised by module and class name, see :func:`is_veto`).
_FOREIGN_VETO: type[Exception] | None = _event_tracking_veto()

if TYPE_CHECKING:
    _VetoBase = Exception
else:
    _VetoBase = _FOREIGN_VETO or Exception


class EventEmissionExit(_VetoBase):
    """Raised by a processor to veto the event for its own branch of the tree.

    The router that runs the processor stops processing the event and sends it to none of
    its backends; sibling branches are not affected. This is not an error: it is counted as
    ``vetoed``, never logged as a failure nor dead-lettered.

    When event-tracking is installed this class also subclasses event-tracking's
    ``EventEmissionExit``, so code written for event-tracking that catches its exception
    catches ours too.
    """


def is_veto(exc: BaseException) -> bool:
    """True when ``exc`` vetoes an event: our :class:`EventEmissionExit` or event-tracking's.

    event-tracking's exception and its subclasses are matched by the real class when
    event-tracking is installed; when it is not, by a class in the exception's MRO named
    ``EventEmissionExit`` in the module ``eventtracking.processors.exceptions``. Any other
    class that is merely named ``EventEmissionExit`` does not veto.
    """
    if isinstance(exc, EventEmissionExit):
        return True
    foreign = _FOREIGN_VETO
    if foreign is not None:
        return isinstance(exc, foreign)
    for cls in type(exc).__mro__:
        if cls.__name__ == "EventEmissionExit" and cls.__module__ == _EVENT_TRACKING_VETO_MODULE:
            return True
    return False


class TrackerNotRegisteredError(EventRouterError, KeyError):
    """No tracker is registered under the name asked for.

    It is a :class:`KeyError` (and so a :class:`LookupError`), as a missing name is in
    event-tracking, so ``except KeyError`` catches it; unlike a plain ``KeyError`` its text
    is the message itself, not its quoted repr.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no tracker is registered as {name!r}: create one and register it first, e.g. "
            f"`eventrouter.tracker.register_tracker(eventrouter.load('routing.yaml'), {name!r})` "
            f"or `register_tracker(Tracker(backends={{...}}), {name!r})`"
        )
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[type[TrackerNotRegisteredError], tuple[str]]:
        return (type(self), (self.name,))


class MissingExtraError(EventRouterError, ImportError):
    """An optional integration was used without its extra installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the {module!r} package, which is not installed: "
            f"run `pip install 'eventrouter[{extra}]'`"
        )
        self.extra = extra


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a routing configuration.

    Attributes:
        message: what is wrong, and where possible what would be right.
        path: the dotted path of the offending key (``backends.archive.options.path``).
        file: the file it came from, or ``None`` for a mapping given in code.
        line: the 1-based line in that file, or ``None`` when unknown.
    """

    message: str
    path: str = ""
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        at = f" at {self.path}" if self.path else ""
        return f"{where}{at}: {self.message}"


class ConfigError(EventRouterError, ValueError):
    """A routing configuration is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} in the routing configuration"
        super().__init__("\n".join([head + ":", *(f"  {issue}" for issue in self.issues)]))


class DeliveryError(EventRouterError):
    """A backend could not deliver an event (or a batch).

    Backends raise it (``from`` the underlying exception) so that the router above them, or
    a retrying wrapper, can count, log and retry or dead-letter the event. The message names
    the backend and the reason, never the event's data.

    Attributes:
        retryable: ``True`` when trying again later may succeed (a server down, a timeout,
            a 5xx answer); ``False`` when it never will (a rejected document, bad credentials).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
