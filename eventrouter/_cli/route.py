"""``eventrouter route CONFIG [FILE]``: route JSON-lines events through the tree."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console

from eventrouter._cli import events
from eventrouter._cli.console import load_config
from eventrouter._cli.exit import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS
from eventrouter._cli.summary import print_route_summary, processor_errors_of
from eventrouter.config import build

MAX_REPORTED_LINES = 20
"""The most skipped lines reported one by one; the others are only counted."""

_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class RouteCounts:
    """What ``route`` read of its input: lines read, rejected and routed, and the first
    :data:`MAX_REPORTED_LINES` problems (``"LINE: skipped: reason"``)."""

    read: int = 0
    rejected: int = 0
    routed: int = 0
    problems: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    """Route every line of ``args.events`` (``-``: stdin) through the tree, close it, and
    print what was skipped and the summary; the exit status says whether all went well."""
    config = load_config(args)
    source_name = "<stdin>" if args.events == "-" else args.events
    if args.events != "-":
        events.check_events_file(args.events)
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
    counts = RouteCounts()
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
    failed = print_route_summary(config, stats, counts, source_name)
    processor_errors = processor_errors_of(stats)
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


def _route_with_progress(
    stream: IO[bytes], tracker: Any, counts: RouteCounts, path: str, err: Console
) -> None:
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


def _route_stream(stream: IO[bytes], tracker: Any, counts: RouteCounts, advance: Any) -> None:
    for number, raw in enumerate(events.lines(stream), start=1):
        if isinstance(raw, events.TooLong):
            if advance is not None:
                advance(raw.size)
            counts.read += 1
            _reject(counts, number, f"longer than {events.MAX_LINE_BYTES} bytes ({raw.size} bytes)")
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
            event = events.parse_line(text.decode("utf-8"))
        except UnicodeDecodeError as exc:
            _reject(counts, number, f"not UTF-8 text (at column {exc.start + 1})")
            continue
        except events.Malformed as exc:
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


def _reject(counts: RouteCounts, number: int, reason: str) -> None:
    counts.rejected += 1
    if len(counts.problems) < MAX_REPORTED_LINES:
        counts.problems.append(f"{number}: skipped: {reason}")
