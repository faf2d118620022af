"""What the command shows: log records on stderr (environment values hidden) and tables on
stdout."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rich.console import Console

from eventrouter.config import ConfigTree, read_config
from eventrouter.config.quiet import quiet_third_party_loggers
from eventrouter.config.secrets import scrub

_COLLAPSED = {
    "processor %s failed": (0, 2),
    "backend %r failed": (0, 2),
    "router %r could not route": (0, 2),
}
"""Per-event error lines shown once per node and exception type (unless ``--debug``): the
start of the record's format, and which of its arguments name the node and the error."""


class ConsoleFilter(logging.Filter):
    """What the command's stderr shows of eventrouter's log records.

    Keeps the logger backend's own records (event lines) off the console; shows the error
    line of a failing processor, backend or router only for its first failure per exception
    type (the summary counts every one), and its frames (a DEBUG record) once, unless
    ``--debug``; and removes every value that came from the environment (see
    :meth:`hide_values_of`).
    """

    def __init__(self, *, debug: bool) -> None:
        super().__init__()
        self.debug = debug
        self.frames_seen: set[str] = set()
        self.failures_seen: set[str] = set()
        self.secrets: list[tuple[dict[str, Any], set[str]]] = []

    def hide_values_of(self, config: ConfigTree) -> None:
        """Scrub the environment-derived (and secret) option values of ``config``."""
        for node in config.walk():
            if node.written or node.options:
                self.secrets.append((node.options, set(node.written)))

    def _seen_before(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` repeats a per-event error line already shown: same kind of
        line, same node, same exception type."""
        text = str(record.msg)
        for start, (node, error) in _COLLAPSED.items():
            if text.startswith(start):
                args = record.args if isinstance(record.args, tuple) else ()
                key = repr((start, args[node : node + 1], args[error : error + 1]))
                if key in self.failures_seen:
                    return True
                self.failures_seen.add(key)
                return False
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("eventrouter.events"):
            return False
        if not self.debug and self._seen_before(record):
            return False
        if record.levelno == logging.DEBUG and not self.debug:
            if not str(record.msg).endswith("raised through: %s"):
                return False
            key = str(record.args)
            if key in self.frames_seen:
                return False
            self.frames_seen.add(key)
        if self.secrets:
            message = record.getMessage()
            for options, written in self.secrets:
                message = scrub(message, options, written)
            record.msg, record.args = message, None
        return True


def setup_logging(*, verbose: bool, debug: bool) -> logging.Handler:
    """Show eventrouter's records on stderr (WARNING and up; everything with ``verbose``
    or ``debug``) through a :class:`ConsoleFilter`; returns the handler to remove after."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("eventrouter: %(levelname)s: %(message)s"))
    handler.addFilter(ConsoleFilter(debug=debug))
    level = logging.DEBUG if (verbose or debug) else logging.WARNING
    handler.setLevel(level)
    logger = logging.getLogger("eventrouter")
    logger.addHandler(handler)
    logger.setLevel(level)
    quiet_third_party_loggers()
    return handler


def load_config(args: argparse.Namespace) -> ConfigTree:
    """Read and validate ``args.config``; its environment values are hidden from the
    command's log lines."""
    config = read_config(args.config)
    console: ConsoleFilter | None = getattr(args, "console", None)
    if console is not None:
        console.hide_values_of(config)
    return config


def stdout() -> Console:
    """A console on stdout; 120 columns wide when it is not a terminal."""
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console.width = 120
    return console
