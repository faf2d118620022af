"""Every exception eventrouter raises, each saying what to do next."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "DeliveryError",
    "EventEmissionExit",
    "EventRouterError",
    "MetricsPortError",
    "MetricsRegistrationError",
    "MissingExtraError",
    "OptionError",
    "OptionTypeError",
    "PartialDeliveryError",
    "SubtreeMismatchError",
    "TrackerNotRegisteredError",
    "is_veto",
]

_Step: TypeAlias = str | int
"""One step into an option's value: a mapping key or a list index."""


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


class PartialDeliveryError(DeliveryError):
    """Some events of a batch failed; every other event of that batch was delivered.

    A backend's ``send_batch(events)`` raises it so that its caller retries or dead-letters
    only the events that failed, instead of the whole batch.

    Attributes:
        failed: the positions, in the ``events`` given to ``send_batch``, of the events that
            were not delivered (ascending, at least one).
        retryable: whether sending those events again later may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        failed: Sequence[int],
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.failed: tuple[int, ...] = tuple(sorted(failed))


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


class MetricsRegistrationError(EventRouterError, ValueError):
    """A tree was registered with an exporter where its series would clash with another's.

    Give each tree registered on one Prometheus registry (or in one multiprocess process)
    its own ``name``: it becomes the ``tracker`` label of every series.
    """


class MetricsPortError(EventRouterError, OSError):
    """The metrics could not be served on the port asked for (``--metrics-port``): it is
    taken, or not this process's to open. Choose another port."""
