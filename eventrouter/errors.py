"""Every exception eventrouter raises, each saying what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "DeliveryError",
    "EventEmissionExit",
    "EventRouterError",
    "MissingExtraError",
    "OptionError",
    "OptionTypeError",
    "SubtreeMismatchError",
    "TrackerNotRegisteredError",
]

_Step: TypeAlias = str | int
"""One step into an option's value: a mapping key or a list index."""


class EventRouterError(Exception):
    """Base class of the errors eventrouter raises itself."""


class EventEmissionExit(Exception):
    """Raised by a processor to veto the event for its own branch of the tree.

    The router that runs the processor stops processing the event and sends it to none of
    its backends; sibling branches are not affected. This is not an error: it is counted as
    ``vetoed``, not logged.
    """


class TrackerNotRegisteredError(EventRouterError, LookupError):
    """No tracker is registered under the name asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no tracker is registered as {name!r}: create one and register it first, e.g. "
            f"`eventrouter.tracker.register_tracker(eventrouter.load('routing.yaml'), {name!r})` "
            f"or `register_tracker(Tracker(backends={{...}}), {name!r})`"
        )
        self.name = name


class MissingExtraError(EventRouterError, ImportError):
    """An optional integration was used without its extra installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the {module!r} package, which is not installed: "
            f"run `pip install 'eventrouter[{extra}]'`"
        )
        self.extra = extra


class OptionError(EventRouterError, ValueError):
    """A processor or backend refused the value of one of its options.

    Constructors raise it so that a configuration error can be reported at the option's own
    file, line and dotted path; nobody has to read the message to know which option it is.

    Args:
        option: the option's (keyword argument's) name, e.g. ``"allow"``.
        message: what is wrong and what would be right; it names the option, since it is
            also what a caller constructing the object in code sees.
        where: the steps inside the option's value that lead to the refused item, e.g.
            ``(1,)`` for the second pattern of ``allow``, ``("video.*", "type")`` inside a
            mapping; empty when the value as a whole is refused.

    Attributes:
        option: as given.
        where: as given, as a tuple.
        message: as given (also ``str(error)``).
    """

    def __init__(self, option: str, message: str, *, where: Sequence[_Step] = ()) -> None:
        super().__init__(message)
        self.option = option
        self.where: tuple[_Step, ...] = tuple(where)
        self.message = message

    @property
    def location(self) -> str:
        """The option and the steps inside it as a path: ``allow[1]``, ``schemas.video.*``."""
        parts = [self.option]
        for step in self.where:
            parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
        return "".join(parts)


class OptionTypeError(OptionError, TypeError):
    """An option's value has the wrong type (a bare string where a list is wanted, ...).

    The same as :class:`OptionError`, and also a :class:`TypeError` as such mistakes have
    always been.
    """


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
        retry_after: seconds the peer asked us to wait before trying again (an HTTP
            ``Retry-After``), or ``None``; a buffered node waits at least that long.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class SubtreeMismatchError(EventRouterError):
    """A Celery worker refused a task: its tree has no celery node at the task's path, or the
    subtree there differs from the one the task was published for (another configuration).

    The worker writes the task's events to its dead-letter file; deploy the same configuration
    to the emitting processes and the workers, then send them on with ``eventrouter replay``.

    Attributes:
        path: the dotted path the task names.
        fingerprint: the fingerprint the task carries.
        found: the fingerprint of the worker's node at that path, or ``None`` when it has none.
        served: the paths the worker serves.
    """

    def __init__(
        self, path: str, fingerprint: str, found: str | None, served: Sequence[str] = ()
    ) -> None:
        if found is None:
            listed = ", ".join(served) or "none"
            what = f"this worker has no celery node at {path!r} (it serves: {listed})"
        else:
            what = (
                f"the subtree at {path!r} differs: the task has fingerprint {fingerprint}, "
                f"this worker's configuration {found}"
            )
        super().__init__(
            f"refused a task for {path!r} (fingerprint {fingerprint}): {what}; run the same "
            "configuration in the emitting processes and the workers, then `eventrouter "
            "replay` the worker's dead letter"
        )
        self.path = path
        self.fingerprint = fingerprint
        self.found = found
        self.served = tuple(served)

    def __reduce__(self) -> tuple[type[SubtreeMismatchError], tuple[object, ...]]:
        # Celery pickles a task's exception; keep its class, not just its message
        return (type(self), (self.path, self.fingerprint, self.found, self.served))
