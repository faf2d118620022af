"""``eventrouter replay CONFIG DEADLETTER...``: send dead-lettered events back to the node
each failed at; SIGTERM or Ctrl-C stops it between two records."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import Any

from rich.console import Console

from eventrouter._cli.console import load_config
from eventrouter._cli.exit import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    signals_received,
)
from eventrouter._cli.summary import print_replay_summary
from eventrouter.config import build


def run(args: argparse.Namespace) -> int:
    """Replay ``args.deadletters`` through the tree, close it, and print the summary."""
    from eventrouter import replay as replaying

    config = load_config(args)
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
    print_replay_summary(report, args.dry_run)
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
        signals_received.append(signum)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    err = Console(file=sys.stderr, highlight=False)

    def run(on_record: Any = None) -> Any:
        return replaying.replay(
            tracker.router,
            args.deadletters,
            dead_letter=target,
            only=args.only,
            dry_run=args.dry_run,
            interrupted=stop.is_set,
            on_record=on_record,
        )

    try:
        if args.dry_run or args.no_progress or not err.is_terminal:
            return run()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
        ) as progress:
            total = sum(_count_lines(path) for path in args.deadletters)
            task = progress.add_task("replay", total=total)
            return run(on_record=lambda _path: progress.advance(task))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _count_lines(path: str) -> int:
    """The records of a dead-letter file (about: its newlines), read in bounded chunks."""
    if not os.path.isfile(path):
        return 0  # refused by the replay itself, with the reason
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            count += chunk.count(b"\n")
    return count
