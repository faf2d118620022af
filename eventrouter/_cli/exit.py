"""The command's exit statuses, and SIGTERM handled like Ctrl-C.

0 when everything went well; 1 when ``route`` skipped malformed lines, a processor raised or
a backend failed, or ``replay`` could not deliver everything; 2 for an invalid configuration
or a usage error; 128 + the signal (130 for Ctrl-C, 143 for SIGTERM) when interrupted.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop reading, flush, print the summary."""


signals_received: list[int] = []
"""The signals that stopped the command, in order (the last sets the exit status)."""


def on_sigterm_interrupt() -> Any:
    """Make SIGTERM interrupt like Ctrl-C; returns the previous handler (``None``: unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: Any) -> None:
        signals_received.append(signum)
        raise Terminated

    return signal.signal(signal.SIGTERM, terminate)


def interrupted_status() -> int:
    """128 + the last signal that stopped the command; 130 (Ctrl-C) when none did."""
    return 128 + signals_received[-1] if signals_received else EXIT_INTERRUPTED
