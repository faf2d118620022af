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
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import stat
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from eventrouter.config import ConfigNode, ConfigTree, build, read_config
from eventrouter.config.quiet import quiet_third_party_loggers
from eventrouter.config.secrets import scrub
from eventrouter.errors import ConfigError, EventRouterError

__all__ = ["main"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_REPORTED_LINES = 20
MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest JSON line ``route`` reads; a longer one is skipped (and read past)."""
_SHOWN_OPTIONS = ("path", "logger_name", "uri", "database", "collection", "allow", "block")


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
    handler = _setup_logging(verbose=args.verbose, debug=args.debug)
    args.console = next(f for f in handler.filters if isinstance(f, _ConsoleFilter))
    _signals_received.clear()
    previous = _on_sigterm_interrupt() if args.run in (_route, _replay) else None
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
        return _interrupted_status()
    except (MemoryError, RecursionError) as exc:
        print(
            f"eventrouter: error: {type(exc).__name__}: the input is too large or too deeply "
            "nested",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line (a message could quote data); --debug: frames
        print(
            f"eventrouter: internal error: {type(exc).__name__} at {_innermost(exc)} "
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
        status = _interrupted_status()
    return status


def _import_from_current_directory() -> str | None:
    """Put the current directory first on ``sys.path``, as ``python -m`` and gunicorn do;
    return what was added (``None``: it was there already)."""
    cwd = os.getcwd()
    if "" in sys.path or cwd in sys.path:
        return None
    sys.path.insert(0, cwd)
    return cwd


def _innermost(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _frames(exc: BaseException) -> str:
    """The frames ``exc`` passed through, innermost last, without its message (which can
    quote event data)."""
    lines = [f"  {type(exc).__name__} raised through:"]
    for frame in traceback.extract_tb(exc.__traceback__):
        lines.append(f"    {frame.filename}:{frame.lineno} in {frame.name}")
    return "\n".join(lines)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop reading, flush, print the summary."""


_signals_received: list[int] = []


def _on_sigterm_interrupt() -> Any:
    """Make SIGTERM interrupt like Ctrl-C; returns the previous handler (``None``: unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: Any) -> None:
        _signals_received.append(signum)
        raise _Terminated

    return signal.signal(signal.SIGTERM, terminate)


def _interrupted_status() -> int:
    return 128 + _signals_received[-1] if _signals_received else EXIT_INTERRUPTED


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

    validate = commands.add_parser(
        "validate",
        help="check a routing configuration",
        description="Check a routing configuration without building it: exit 0 and a "
        "one-line summary, or exit 2 and every problem with its file, line and path.",
    )
    validate.add_argument("config", metavar="CONFIG", help="the YAML routing configuration")
    validate.set_defaults(run=_validate)

    tree = commands.add_parser(
        "tree",
        help="draw the routing tree",
        description="Draw the routing tree: routers, processors, backends and their key "
        "options (secrets masked, values from the environment shown as written).",
    )
    tree.add_argument("config", metavar="CONFIG", help="the YAML routing configuration")
    tree.set_defaults(run=_tree)

    route = commands.add_parser(
        "route",
        help="route JSON-lines events through the tree",
        description='Read JSON lines ({"name": ..., "data": {...}, "context"?: {...}, '
        '"timestamp"?: ISO 8601}) and route each event through the tree, then print a '
        "summary. Malformed lines are reported with their line numbers and skipped (exit 1).",
    )
    route.add_argument("config", metavar="CONFIG", help="the YAML routing configuration")
    route.add_argument(
        "events",
        metavar="FILE",
        nargs="?",
        default="-",
        help="the JSON-lines file to read; '-' (the default) reads standard input",
    )
    route.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar on a terminal"
    )
    _metrics_options(route)
    route.set_defaults(run=_route)

    replay = commands.add_parser(
        "replay",
        help="send dead-lettered events back to their own destinations",
        description="Send each event of the dead-letter files back to the node it failed "
        "at (its dotted destination path in the tree), and to no other. What fails again "
        "goes to a new dead-letter file; each input is renamed <file>.replayed once every "
        "record in it is delivered or in the new file. SIGTERM or Ctrl-C stops reading, "
        "delivers or dead-letters what was sent, and carries the rest of the file over.",
    )
    replay.add_argument("config", metavar="CONFIG", help="the YAML routing configuration")
    replay.add_argument(
        "deadletters", metavar="DEADLETTER", nargs="+", help="the dead-letter files to replay"
    )
    replay.add_argument(
        "--only",
        metavar="PATH",
        help="replay only the destination at this dotted path, or under it (the other "
        "records are carried over to the new dead-letter file)",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be sent where; send, write and rename nothing",
    )
    replay.add_argument(
        "--dead-letter",
        metavar="FILE",
        help="the new dead-letter file (default: <first input>.retry-<UTC time>.jsonl)",
    )
    replay.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar on a terminal"
    )
    replay.set_defaults(run=_replay)

    worker = commands.add_parser(
        "worker",
        help="run a Celery worker for the tree's celery nodes",
        description="Build the tree from CONFIG and run a Celery worker that delivers, per "
        "task, the subtree of the celery node the task names. Prints the subtrees served; "
        "runs until stopped (SIGTERM: warm shutdown).",
    )
    worker.add_argument("config", metavar="CONFIG", help="the YAML routing configuration")
    worker.add_argument(
        "--queue",
        "-Q",
        action="append",
        default=[],
        metavar="Q",
        help="serve only the celery nodes on this queue (repeatable; default: all)",
    )
    worker.add_argument(
        "--concurrency", "-c", type=int, metavar="N", help="worker processes (default: CPUs)"
    )
    worker.add_argument(
        "--loglevel", "-l", default="INFO", metavar="L", help="Celery's log level (INFO)"
    )
    worker.add_argument(
        "--dead-letter",
        metavar="FILE",
        help="where refused and undeliverable events go (default: the configuration's "
        "dead_letter, else eventrouter-worker.deadletter.jsonl)",
    )
    _metrics_options(worker)
    worker.set_defaults(run=_worker)
    return parser


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


class _ConsoleFilter(logging.Filter):
    """What the command's stderr shows of eventrouter's log records.

    Keeps the logger backend's own records (event lines) off the console; shows a failing
    processor's error line and frames (a DEBUG record) only for its first failure, unless
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

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("eventrouter.events"):
            return False
        if not self.debug and str(record.msg).startswith("processor %s failed"):
            # once per processor and exception type; the summary counts every one
            args = record.args if isinstance(record.args, tuple) else ()
            key = repr(args[:1] + args[2:3])  # the processor and the exception's type
            if key in self.failures_seen:
                return False
            self.failures_seen.add(key)
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


def _setup_logging(*, verbose: bool, debug: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("eventrouter: %(levelname)s: %(message)s"))
    handler.addFilter(_ConsoleFilter(debug=debug))
    level = logging.DEBUG if (verbose or debug) else logging.WARNING
    handler.setLevel(level)
    logger = logging.getLogger("eventrouter")
    logger.addHandler(handler)
    logger.setLevel(level)
    quiet_third_party_loggers()
    return handler


def _read_config(args: argparse.Namespace) -> ConfigTree:
    """Read and validate ``args.config``; its environment values are hidden from the
    command's log lines."""
    config = read_config(args.config)
    console: _ConsoleFilter | None = getattr(args, "console", None)
    if console is not None:
        console.hide_values_of(config)
    return config


def _stdout() -> Console:
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console.width = 120
    return console


# -- validate -----------------------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    tree = _read_config(args)
    origin = " (translated from event-tracking settings)" if tree.migrated else ""
    print(f"{args.config}: valid{origin}: {tree.summary()}")
    for note in tree.notes:
        print(f"  note: {note}")
    return EXIT_OK


# -- tree ---------------------------------------------------------------------------------


def _label(node: ConfigNode, *, show_options: bool = True) -> Text:
    text = Text()
    if node.kind == "backend":
        text.append(node.name, style="bold")
        text.append(": ")
    text.append("router" if node.router and node.class_name == "router" else node.shown_class)
    if node.router and node.class_name != "router":
        text.append(" (router)")
    if show_options:
        for key, value in node.shown_options().items():
            text.append(f"  {key}=", style="cyan")
            text.append(value)
    if node.buffered is not None:
        text.append("  (buffered)", style="green")
    mark = _celery_mark(node)
    if mark:
        text.append(mark, style="bold green")
    if not node.enabled:
        text.append("  [disabled]", style="bold yellow")
        text.stylize("dim")
    return text


def _celery_mark(node: ConfigNode) -> str:
    """``[celery workers, queue Q]`` for a celery node (its backends run on workers)."""
    from eventrouter.backends.celery import MEMORY_BROKER, CeleryRouter

    target = node.target
    if not (isinstance(target, type) and issubclass(target, CeleryRouter)):
        return ""
    if node.options.get("broker", MEMORY_BROKER) == MEMORY_BROKER:
        return "  [celery, in this process: memory://]"
    return f"  [celery workers, queue {node.options.get('queue', 'eventrouter')}]"


def _add_children(
    branch: Tree, processors: list[ConfigNode], backends: Mapping[str, ConfigNode]
) -> None:
    if processors:
        chain = branch.add(Text("processors", style="magenta"))
        for processor in processors:
            chain.add(_label(processor))
    for child in backends.values():
        sub = branch.add(_label(child))
        if child.router:
            _add_children(sub, child.processors, child.backends)


def _tree(args: argparse.Namespace) -> int:
    config = _read_config(args)
    root = Tree(Text(f"{args.config} (root router)", style="bold"))
    _add_children(root, config.processors, config.backends)
    console = _stdout()
    console.print(root)
    console.print(config.summary())
    return EXIT_OK


# -- worker -------------------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    from eventrouter import worker

    queues = [q for value in args.queue for q in value.split(",") if q]
    metrics = None
    if args.metrics_port is not None:  # prefork children count: sum them through files
        from eventrouter.metrics import use_multiprocess_dir

        use_multiprocess_dir()
        metrics = (args.metrics_port, args.metrics_host)
    return worker.run(
        args.config,
        queues=queues,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        dead_letter=args.dead_letter,
        metrics=metrics,
    )


# -- route --------------------------------------------------------------------------------


@dataclass
class _RouteCounts:
    read: int = 0
    rejected: int = 0
    routed: int = 0
    problems: list[str] = field(default_factory=list)


class _Malformed(ValueError):
    pass


def _parse_line(text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Malformed(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise _Malformed("nested too deeply to read") from None
    if not isinstance(record, dict):
        raise _Malformed("expected a JSON object with at least a `name`")
    name = record.get("name")
    if not isinstance(name, str) or not name:
        raise _Malformed("`name` is missing or not a non-empty string")
    data = record.get("data")
    if data is not None and not isinstance(data, dict):
        raise _Malformed("`data` must be a JSON object")
    context = record.get("context")
    if context is not None and not isinstance(context, dict):
        raise _Malformed("`context` must be a JSON object")
    timestamp = _timestamp(record.get("timestamp"))
    event_id = record.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise _Malformed("`id` must be a string")
    from eventrouter.event import build_event

    return build_event(name, data, context=context, timestamp=timestamp, event_id=event_id)


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Malformed("`timestamp` must be an ISO 8601 string or a number of seconds")
    try:
        if isinstance(value, str):
            parsed = dt.datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)  # out of range in UTC: refused here, not later
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise _Malformed(
            "`timestamp` is not a valid ISO 8601 date and time between the years 1 and 9999 in UTC"
        ) from None


def _check_events_file(path: str) -> None:
    """Refuse a directory or a device (``/dev/zero`` never ends, and has no lines); a FIFO
    is read like standard input."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise EventRouterError(f"{path}: is a directory: give a JSON-lines file, or '-'")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise EventRouterError(
            f"{path}: is a device: give a JSON-lines file, or '-' to read standard input"
        )


@dataclass(frozen=True)
class _TooLong:
    """Stands for a line longer than :data:`MAX_LINE_BYTES` (read past, not kept)."""

    size: int


def _lines(stream: IO[bytes]) -> Iterator[bytes | _TooLong]:
    """The lines of ``stream``; a line longer than :data:`MAX_LINE_BYTES` is read past in
    pieces and given as :class:`_TooLong`, so that no line needs more memory than that."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) <= MAX_LINE_BYTES:
            yield line
            continue
        size = len(line)
        while line and not line.endswith(b"\n"):
            line = stream.readline(MAX_LINE_BYTES)
            size += len(line)
        yield _TooLong(size)


def _route(args: argparse.Namespace) -> int:
    config = _read_config(args)
    source_name = "<stdin>" if args.events == "-" else args.events
    if args.events != "-":
        _check_events_file(args.events)
    stream: IO[bytes] = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")  # noqa: SIM115
    try:
        tracker = build(config)
    except BaseException:
        if stream is not sys.stdin.buffer:
            stream.close()
        raise
    if args.metrics_port is not None:
        from eventrouter.metrics import prometheus

        prometheus.register(tracker, interval=1.0)
        prometheus.serve(args.metrics_port, args.metrics_host)
    counts = _RouteCounts()
    interrupted = False
    err = Console(file=sys.stderr, highlight=False)
    show_progress = args.events != "-" and not args.no_progress and err.is_terminal
    try:
        if show_progress:
            _route_with_progress(stream, tracker, counts, args.events, err)
        else:
            _route_stream(stream, tracker, counts, None)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        try:  # flush, then close: what a backend gives up on while closing is counted too
            tracker.close()
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, still report
            interrupted = True
        stats = tracker.stats()
    for problem in counts.problems:
        print(f"{source_name}:{problem}", file=sys.stderr)
    hidden = counts.rejected - len(counts.problems)
    if hidden > 0:
        print(f"{source_name}: ... and {hidden} more malformed lines", file=sys.stderr)
    failed = _print_summary(config, stats, counts, source_name)
    processor_errors = _processor_errors(stats)
    if processor_errors and not (args.verbose or args.debug):
        print(
            f"eventrouter: {processor_errors} processor error(s), the first of each processor "
            "shown above: run with -v to see the frames it failed in",
            file=sys.stderr,
        )
    if interrupted:
        print(f"eventrouter: interrupted after {counts.read} lines", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_PROBLEMS if counts.rejected or failed or processor_errors else EXIT_OK


def _processor_errors(stats: Mapping[str, Any]) -> int:
    """The processor errors of a router's stats and of every router below it."""
    total = int(stats.get("processor_errors") or 0)
    for entry in (stats.get("backends") or {}).values():
        child = entry.get("stats") if isinstance(entry, Mapping) else None
        if isinstance(child, Mapping) and "processor_errors" in child:
            total += _processor_errors(child)
    return total


def _route_with_progress(
    stream: IO[bytes], tracker: Any, counts: _RouteCounts, path: str, err: Console
) -> None:
    import os

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    total = os.fstat(stream.fileno()).st_size
    columns = (
        TextColumn("routing"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(path, total=total)
        _route_stream(stream, tracker, counts, lambda n: progress.advance(task, n))


_UTF8_BOM = b"\xef\xbb\xbf"


def _route_stream(stream: IO[bytes], tracker: Any, counts: _RouteCounts, advance: Any) -> None:
    for number, raw in enumerate(_lines(stream), start=1):
        if isinstance(raw, _TooLong):
            if advance is not None:
                advance(raw.size)
            counts.read += 1
            _reject(counts, number, f"longer than {MAX_LINE_BYTES} bytes ({raw.size} bytes)")
            continue
        if advance is not None:
            advance(len(raw))
        text = raw.strip()
        if number == 1 and text.startswith(_UTF8_BOM):  # files saved by Windows tools
            text = text[len(_UTF8_BOM) :]
        if not text:
            continue
        counts.read += 1
        try:
            event = _parse_line(text.decode("utf-8"))
        except UnicodeDecodeError as exc:
            _reject(counts, number, f"not UTF-8 text (at column {exc.start + 1})")
            continue
        except _Malformed as exc:
            _reject(counts, number, str(exc))
            continue
        except Exception as exc:  # its message could quote the line: name the type only
            _reject(counts, number, f"cannot be read as an event ({type(exc).__name__})")
            continue
        try:
            tracker.send(event)
        except Exception as exc:  # one bad line never stops the rest
            _reject(counts, number, f"could not be routed ({type(exc).__name__})")
            continue
        counts.routed += 1


def _reject(counts: _RouteCounts, number: int, reason: str) -> None:
    counts.rejected += 1
    if len(counts.problems) < MAX_REPORTED_LINES:
        counts.problems.append(f"{number}: skipped: {reason}")


@dataclass
class _Row:
    path: str
    node: ConfigNode | None
    delivered: int | None = None
    failed: int | None = None
    note: str = ""


def _rows(stats: Mapping[str, Any], nodes: Mapping[str, ConfigNode], prefix: str) -> Iterator[_Row]:
    entries: Mapping[str, Any] = stats.get("backends", {})
    for name, node in nodes.items():
        path = f"{prefix}{name}"
        entry = entries.get(name)
        if entry is None:
            yield _Row(path, node, note="disabled" if not node.enabled else "not built")
            continue
        child: Mapping[str, Any] = entry.get("stats") or {}
        if node.router:
            note = f"router: vetoed {child.get('vetoed', 0)}"
            if child.get("processor_errors"):
                note += f", processor errors {child['processor_errors']}"
            yield _Row(path, node, entry.get("delivered"), entry.get("failed"), note)
            yield from _rows(child, node.backends, f"{path}.")
            continue
        details = [f"{k}={v}" for k, v in node.shown_options().items() if k in _SHOWN_OPTIONS]
        details += [f"{k}: {v}" for k, v in child.items() if isinstance(v, int) and v]
        yield _Row(path, node, entry.get("delivered"), entry.get("failed"), "  ".join(details))


def _print_summary(
    config: ConfigTree, stats: Mapping[str, Any], counts: _RouteCounts, source: str
) -> int:
    console = _stdout()
    totals = Table(title="input", show_header=False, title_justify="left")
    totals.add_column("what")
    totals.add_column("count", justify="right")
    totals.add_row("file", Text(source))
    totals.add_row("read", str(counts.read))
    totals.add_row("rejected (malformed)", str(counts.rejected))
    totals.add_row("routed", str(counts.routed))
    totals.add_row("vetoed at the root", str(stats.get("vetoed", 0)))
    totals.add_row("processor errors (all routers)", str(_processor_errors(stats)))
    console.print(totals)

    table = Table(title="backends", title_justify="left")
    table.add_column("backend")
    table.add_column("class")
    table.add_column("delivered", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("notes")
    failed = 0
    for row in _rows(stats, config.backends, ""):
        assert row.node is not None
        is_leaf = not row.node.router
        if is_leaf and row.failed:
            failed += row.failed
        style = "dim" if row.note in ("disabled", "not built") else None
        table.add_row(
            Text(row.path),
            Text(row.node.shown_class),
            "-" if row.delivered is None else str(row.delivered),
            "-" if row.failed is None else str(row.failed),
            Text(row.note),
            style=style,
        )
    console.print(table)
    return failed


# -- replay -------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from eventrouter import replay as replaying

    config = _read_config(args)
    tracker = build(config)
    try:
        if args.only and replaying.resolve(tracker.router, args.only) is None:
            print(f"eventrouter: error: no node at {args.only!r} in {args.config}", file=sys.stderr)
            return EXIT_USAGE
        target = args.dead_letter or replaying.default_dead_letter_path(args.deadletters[0])
        stop = threading.Event()
        try:
            report = _replay_with_signals(args, tracker, target, stop, replaying)
        except ValueError as exc:  # the new dead-letter file is one of the inputs
            print(f"eventrouter: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    finally:
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
            tracker.close(replaying.CLOSE_TIMEOUT)
    _print_replay_summary(report, args.dry_run)
    if report.interrupted:
        print("eventrouter: interrupted: the rest was carried over", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _replay_with_signals(
    args: argparse.Namespace, tracker: Any, target: Any, stop: threading.Event, replaying: Any
) -> Any:
    """Run the replay with SIGTERM and SIGINT stopping it between two records."""

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second signal: stop waiting
            raise KeyboardInterrupt
        _signals_received.append(signum)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    err = Console(file=sys.stderr, highlight=False)
    try:
        if args.dry_run or args.no_progress or not err.is_terminal:
            return replaying.replay(
                tracker.router,
                args.deadletters,
                dead_letter=target,
                only=args.only,
                dry_run=args.dry_run,
                interrupted=stop.is_set,
            )
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
        ) as progress:
            total = sum(_count_lines(path) for path in args.deadletters)
            task = progress.add_task("replay", total=total)
            return replaying.replay(
                tracker.router,
                args.deadletters,
                dead_letter=target,
                only=args.only,
                interrupted=stop.is_set,
                on_record=lambda _path: progress.advance(task),
            )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _print_replay_summary(report: Any, dry_run: bool) -> None:
    console = _stdout()
    table = Table(
        title="replay (dry run: nothing sent)" if dry_run else "replay", title_justify="left"
    )
    table.add_column("destination")
    table.add_column("records", justify="right")
    if not dry_run:
        table.add_column("delivered", justify="right")
        table.add_column("failed again", justify="right")
    for path, counts in sorted(report.destinations.items()):
        row: list[Text | str] = [Text(path), str(counts.records)]
        if not dry_run:
            row += [str(counts.delivered), str(counts.failed_again + counts.lost)]
        table.add_row(*row)
    console.print(table)
    if report.unknown:
        shown = ", ".join(sorted(report.unknown_paths)[:5])
        console.print(f"not in the tree (carried over): {report.unknown} ({shown})")
    if report.carried:
        console.print(f"carried over unchanged: {report.carried}")
    if report.damaged:
        console.print(f"damaged lines skipped: {report.damaged}")
    if dry_run:
        return
    written = report.dead_letter is not None and report.dead_letter.exists()
    console.print(f"new dead-letter file: {report.dead_letter if written else '(none needed)'}")
    for path in report.renamed:
        console.print(f"settled: {path} -> {path.name}.replayed")
    for path in report.kept:
        console.print(f"kept (not all settled): {path}")
