"""The live containers of a router: its backends by name and its processor chain.

``router.backends`` is a :class:`BackendMap` and ``router.processors`` a
:class:`ProcessorList`: a dict and a list that check what is put in them and drop the
router's cached snapshot on every change, so a change takes effect for the next event while
the hot path reads only the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, SupportsIndex, TypeVar, overload

from eventrouter._loglabels import describe
from eventrouter.typing import Backend, Processor

if TYPE_CHECKING:
    from eventrouter.backends.routing import RoutingBackend

__all__ = ["BackendMap", "ProcessorList"]

_T = TypeVar("_T")


def _check_backend(name: object, backend: object) -> None:
    send = getattr(backend, "send", None)
    if not callable(send):
        raise ValueError(
            f"backend {name!r} ({type(backend).__name__}) has no callable send(event): "
            "a backend is any object with a send(event) method"
        )


def _check_processor(processor: object) -> None:
    if not callable(processor):
        raise ValueError(
            f"processor {describe(processor)} is not callable: a processor is any callable "
            "that takes the event and returns it, a new event, or None"
        )


class BackendMap(dict[str, Backend]):
    """A router's backends by name, in delivery order: a dict whose changes take effect.

    Setting a name checks the backend (``ValueError`` without a callable ``send``), keeps
    the position of a name that is already there and appends a new one, and binds the
    backend's node path. Every change makes the router route the next event through the new
    contents. Copies (``dict(m)``, ``m.copy()``, ``copy.copy(m)``, pickling) are plain dicts.
    """

    __slots__ = ("_router",)

    def __init__(self, router: RoutingBackend) -> None:
        super().__init__()
        self._router = router

    def __setitem__(self, name: str, backend: Backend) -> None:
        _check_backend(name, backend)
        router = self._router
        with router._lock:
            dict.__setitem__(self, name, backend)
            router._targets = None
        router._bind_child(name, backend)

    def __delitem__(self, name: str) -> None:
        router = self._router
        with router._lock:
            dict.__delitem__(self, name)
            router._targets = None

    @overload
    def pop(self, name: str, /) -> Backend: ...
    @overload
    def pop(self, name: str, default: Backend, /) -> Backend: ...
    @overload
    def pop(self, name: str, default: _T, /) -> Backend | _T: ...
    def pop(self, name: str, /, *default: Any) -> Any:
        router = self._router
        with router._lock:
            value = dict.pop(self, name, *default)
            router._targets = None
        return value

    def popitem(self) -> tuple[str, Backend]:
        router = self._router
        with router._lock:
            item = dict.popitem(self)
            router._targets = None
        return item

    def clear(self) -> None:
        router = self._router
        with router._lock:
            dict.clear(self)
            router._targets = None

    def setdefault(self, name: str, default: Backend) -> Backend:
        if name in self:
            return self[name]
        self[name] = default
        return default

    def update(self, *args: Any, **kwargs: Backend) -> None:
        """Set every name given (as :meth:`dict.update` takes them), checking each first."""
        items = dict(*args, **kwargs)
        for name, backend in items.items():
            _check_backend(name, backend)
        router = self._router
        with router._lock:
            dict.update(self, items)
            router._targets = None
        for name, backend in items.items():
            router._bind_child(name, backend)

    def __ior__(self, other: Any) -> BackendMap:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce__(self) -> tuple[type[dict[str, Backend]], tuple[dict[str, Backend]]]:
        return (dict, (dict(self),))


class ProcessorList(list[Processor]):
    """A router's processor chain: a list whose changes take effect for the next event.

    Adding anything that is not callable raises ``ValueError``. Copies (``list(p)``,
    ``p.copy()``, ``copy.copy(p)``, pickling) are plain lists.
    """

    __slots__ = ("_router",)

    def __init__(self, router: RoutingBackend) -> None:
        super().__init__()
        self._router = router

    def _changed(self) -> None:
        self._router._chain = None

    def append(self, processor: Processor) -> None:
        _check_processor(processor)
        with self._router._lock:
            list.append(self, processor)
            self._changed()

    def extend(self, processors: Iterable[Processor]) -> None:
        items = list(processors)
        for processor in items:
            _check_processor(processor)
        with self._router._lock:
            list.extend(self, items)
            self._changed()

    def __iadd__(self, processors: Iterable[Processor]) -> ProcessorList:  # type: ignore[override,misc]
        self.extend(processors)
        return self

    def insert(self, index: SupportsIndex, processor: Processor) -> None:
        _check_processor(processor)
        with self._router._lock:
            list.insert(self, index, processor)
            self._changed()

    @overload
    def __setitem__(self, index: SupportsIndex, processor: Processor) -> None: ...
    @overload
    def __setitem__(self, index: slice, processor: Iterable[Processor]) -> None: ...
    def __setitem__(self, index: Any, processor: Any) -> None:
        if isinstance(index, slice):
            processor = list(processor)
            for item in processor:
                _check_processor(item)
        else:
            _check_processor(processor)
        with self._router._lock:
            list.__setitem__(self, index, processor)
            self._changed()

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        with self._router._lock:
            list.__delitem__(self, index)
            self._changed()

    def pop(self, index: SupportsIndex = -1) -> Processor:
        with self._router._lock:
            processor = list.pop(self, index)
            self._changed()
        return processor

    def remove(self, processor: Processor) -> None:
        with self._router._lock:
            list.remove(self, processor)
            self._changed()

    def clear(self) -> None:
        with self._router._lock:
            list.clear(self)
            self._changed()

    def reverse(self) -> None:
        with self._router._lock:
            list.reverse(self)
            self._changed()

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        with self._router._lock:
            list.sort(self, key=key, reverse=reverse)
            self._changed()

    def __imul__(self, count: SupportsIndex) -> ProcessorList:
        with self._router._lock:
            list.__imul__(self, count)
            self._changed()
        return self

    def __reduce__(self) -> tuple[type[list[Processor]], tuple[list[Processor]]]:
        return (list, (list(self),))
