"""Data-free labels for log lines: which object failed, on which event, and where.

A failure below ``emit`` is logged once, and the line must never carry the event's data nor
an exception's message (which can quote it). These helpers say what a line may say: the
failing object's class, the event's name and id, and the source lines an exception passed
through.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping

__all__ = ["describe", "event_label", "frames", "where"]


def describe(obj: object) -> str:
    """A short, data-free label for a processor or backend: its (or its class's) dotted name."""
    target = (
        obj if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")) else None
    )
    if target is None:
        target = type(obj)
    module = getattr(target, "__module__", "") or ""
    qualname = getattr(target, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}" if module else qualname


def event_label(event: object) -> str:
    """``name=... id=...``; works for events without a name, or that are not mappings."""
    if isinstance(event, Mapping):
        return f"name={event.get('name')!r} id={event.get('id')!r}"
    return f"<{type(event).__name__} event>"


def where(exc: BaseException) -> str:
    """``file:line`` of the frame that raised ``exc``, so a line locates a failure without data."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def frames(exc: BaseException) -> list[str]:
    """``file:line in function`` for each frame ``exc`` passed through, outermost first."""
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)]
