"""The structural types: the built-in parts satisfy them without inheriting anything."""

from __future__ import annotations

from eventrouter import MemoryBackend, RoutingBackend
from eventrouter.backends.logger import LoggerBackend
from eventrouter.typing import Backend, BatchBackend, Closable, Flushable


def test_routers_are_backends_that_flush_and_close() -> None:
    router = RoutingBackend()
    assert isinstance(router, Backend)
    assert isinstance(router, Flushable)
    assert isinstance(router, Closable)


def test_memory_backend_takes_batches() -> None:
    assert isinstance(MemoryBackend(), BatchBackend)


def test_a_plain_object_with_send_is_a_backend() -> None:
    class Mine:
        def send(self, event: dict[str, object]) -> None:
            pass

    assert isinstance(Mine(), Backend)
    assert not isinstance(object(), Backend)


def test_logger_backend_is_a_backend() -> None:
    assert isinstance(LoggerBackend(logger_name="tests.typing"), Backend)
