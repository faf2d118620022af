"""Thread pools that carry the caller's context (the request's, a task's) into the work.

A function submitted to a plain :class:`~concurrent.futures.ThreadPoolExecutor` runs in the
worker thread's own :mod:`contextvars` context, so events it emits lose the request context.
:class:`ContextThreadPoolExecutor` runs each call in a copy of the context of the code that
submitted it; :func:`with_context` does the same for one callable handed to any other API,
such as asyncio's ``loop.run_in_executor`` (which, unlike ``asyncio.to_thread`` and asgiref's
``sync_to_async``/``async_to_sync``, does not carry the context).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["ContextThreadPoolExecutor", "with_context"]

P = ParamSpec("P")
R = TypeVar("R")


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose calls see the submitter's context variables.

    Each ``submit`` (and so each item of ``map``) runs in its own copy of the context at the
    time of the call: what the call enters is never seen by the submitter or other calls.
    """

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a copy of the current context."""
        context = contextvars.copy_context()
        return super().submit(_run_in, context, fn, *args, **kwargs)


def _run_in(
    context: contextvars.Context, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    return context.run(fn, *args, **kwargs)


def with_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that every call runs in a copy of the context current now.

    For callbacks handed to threads, timers or pools that are not a
    :class:`ContextThreadPoolExecutor`: ``threading.Thread(target=with_context(work))``.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run
