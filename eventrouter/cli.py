"""The ``eventrouter`` command: ``validate``, ``tree``, ``route``, ``replay`` and ``worker``.

Exit status: 0 when everything went well; 1 when ``route`` skipped malformed lines, a
processor raised or a backend failed to deliver, or ``replay`` could not deliver everything;
2 for an invalid configuration or a usage error; 128 + the signal (130 for Ctrl-C, 143 for
SIGTERM) when interrupted (after flushing and printing the summary).

Modules are imported from the current directory as ``python -m eventrouter`` does (a
``myapp.tracking.add_site`` in the configuration is found in ``./myapp``). Values taken from
the environment never appear in the command's log lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from eventrouter._cli import replay, route, tree, validate, worker
from eventrouter._cli.console import ConsoleFilter, setup_logging
from eventrouter._cli.exit import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    interrupted_status,
    on_sigterm_interrupt,
    signals_received,
)
from eventrouter._loglabels import frames, where
from eventrouter.errors import ConfigError, EventRouterError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eventrouter`` command line; returns the exit status.

    Args:
        argv: the arguments (without the program name); defaults to ``sys.argv[1:]``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    level = logging.getLogger("eventrouter").level
    handler = setup_logging(verbose=args.verbose, debug=args.debug)
    args.console = next(f for f in handler.filters if isinstance(f, ConsoleFilter))
    signals_received.clear()
    previous = on_sigterm_interrupt() if args.run in (route.run, replay.run) else None
    cwd = _import_from_current_directory()
    try:
        status: int = args.run(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except (EventRouterError, OSError) as exc:
        print(f"eventrouter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("eventrouter: interrupted", file=sys.stderr)
        return interrupted_status()
    except (MemoryError, RecursionError) as exc:
        print(
            f"eventrouter: error: {type(exc).__name__}: the input is too large or too deeply "
            "nested",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line (a message could quote data); --debug: frames
        print(
            f"eventrouter: internal error: {type(exc).__name__} at {where(exc)} "
            "(run with --debug to see where it came from)",
            file=sys.stderr,
        )
        if args.debug:
            print(_frames(exc), file=sys.stderr)
        return EXIT_USAGE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if cwd is not None and cwd in sys.path:
            sys.path.remove(cwd)
        logging.getLogger("eventrouter").removeHandler(handler)
        logging.getLogger("eventrouter").setLevel(level)
    if status == EXIT_INTERRUPTED:
        status = interrupted_status()
    return status


def _import_from_current_directory() -> str | None:
    """Put the current directory first on ``sys.path``, as ``python -m`` and gunicorn do;
    return what was added (``None``: it was there already)."""
    cwd = os.getcwd()
    if "" in sys.path or cwd in sys.path:
        return None
    sys.path.insert(0, cwd)
    return cwd


def _frames(exc: BaseException) -> str:
    """The frames ``exc`` passed through, innermost last, without its message (which can
    quote event data)."""
    header = f"  {type(exc).__name__} raised through:"
    return "\n".join([header, *(f"    {frame}" for frame in frames(exc))])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventrouter",
        description="Validate, draw and run eventrouter routing trees.",
    )
    parser.add_argument("--version", action="version", version=f"eventrouter {_version()}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log informational messages to stderr, and the frames of the first failure of "
        "each processor (where, never the event)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="as -v, and eventrouter's debug messages; an internal error shows its frames",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    _command(
        commands,
        "validate",
        validate.run,
        help="check a routing configuration",
        description="Check a routing configuration without building it: exit 0 and a "
        "one-line summary, or exit 2 and every problem with its file, line and path.",
    )

    _command(
        commands,
        "tree",
        tree.run,
        help="draw the routing tree",
        description="Draw the routing tree: routers, processors, backends and their key "
        "options (secrets masked, values from the environment shown as written).",
    )

    route_command = _command(
        commands,
        "route",
        route.run,
        help="route JSON-lines events through the tree",
        description='Read JSON lines ({"name": ..., "data": {...}, "context"?: {...}, '
        '"timestamp"?: ISO 8601}) and route each event through the tree, then print a '
        "summary. Malformed lines are reported with their line numbers and skipped (exit 1).",
    )
    route_command.add_argument(
        "events",
        metavar="FILE",
        nargs="?",
        default="-",
        help="the JSON-lines file to read; '-' (the default) reads standard input",
    )
    route_command.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar on a terminal"
    )
    _metrics_options(route_command)

    replay_command = _command(
        commands,
        "replay",
        replay.run,
        help="send dead-lettered events back to their own destinations",
        description="Send each event of the dead-letter files back to the node it failed "
        "at (its dotted destination path in the tree), and to no other. What fails again "
        "goes to a new dead-letter file; each input is renamed <file>.replayed once every "
        "record in it is delivered or in the new file. SIGTERM or Ctrl-C stops reading, "
        "delivers or dead-letters what was sent, and carries the rest of the file over.",
    )
    replay_command.add_argument(
        "deadletters", metavar="DEADLETTER", nargs="+", help="the dead-letter files to replay"
    )
    replay_command.add_argument(
        "--only",
        metavar="PATH",
        help="replay only the destination at this dotted path, or under it (the other "
        "records are carried over to the new dead-letter file)",
    )
    replay_command.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be sent where; send, write and rename nothing",
    )
    replay_command.add_argument(
        "--dead-letter",
        metavar="FILE",
        help="the new dead-letter file (default: <first input>.retry-<UTC time>.jsonl)",
    )
    replay_command.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar on a terminal"
    )

    worker_command = _command(
        commands,
        "worker",
        worker.run,
        help="run a Celery worker for the tree's celery nodes",
        description="Build the tree from CONFIG and run a Celery worker that delivers, per "
        "task, the subtree of the celery node the task names. Prints the subtrees served; "
        "runs until stopped (SIGTERM: warm shutdown).",
    )
    worker_command.add_argument(
        "--queue",
        "-Q",
        action="append",
        default=[],
        metavar="Q",
        help="serve only the celery nodes on this queue (repeatable; default: all)",
    )
    worker_command.add_argument(
        "--concurrency", "-c", type=int, metavar="N", help="worker processes (default: CPUs)"
    )
    worker_command.add_argument(
        "--loglevel", "-l", default="INFO", metavar="L", help="Celery's log level (INFO)"
    )
    worker_command.add_argument(
        "--dead-letter",
        metavar="FILE",
        help="where refused and undeliverable events go (default: the configuration's "
        "dead_letter, else eventrouter-worker.deadletter.jsonl)",
    )
    _metrics_options(worker_command)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    """Add the command ``name``, which takes a CONFIG and runs ``run(args)``."""
    command = commands.add_parser(name, help=help, description=description)
    command.add_argument("config", metavar="CONFIG", help="the YAML routing configuration")
    command.set_defaults(run=run)
    return command


def _metrics_options(command: argparse.ArgumentParser) -> None:
    from eventrouter.metrics import port_number

    command.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="N",
        help="serve Prometheus metrics on this port, 1-65535 (needs eventrouter[prometheus])",
    )
    command.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the metrics are served on (default: 127.0.0.1, this machine "
        "only; 0.0.0.0 for every interface)",
    )


def _version() -> str:
    from eventrouter import __version__

    return __version__
