"""Speed of the whole example tree, backends included: eventrouter, event-tracking, by hand.

The tree is ``examples/config.yaml`` as it ships: every event to a JSON-log archive (size
rotation on), and a branch that keeps learning events (``name_filter``), redacts personal
fields and secret-looking keys (``redact``) and writes a second JSON log. Three builds of it:

- eventrouter: ``eventrouter.load("examples/config.yaml")``;
- event-tracking 4.0.2: its ``Tracker``, ``RoutingBackend``, ``LoggerBackend`` (to loggers
  with a ``RotatingFileHandler``/``FileHandler``), ``RegexFilter`` with the same names, and a
  small redaction callable doing the same replacements;
- a straight-line hand-written limit: the same envelope, filter, redaction and lines, with the
  same JSON library as eventrouter (orjson when installed), written to buffered files.

In-app, each event is emitted inside a request context (``with tracker.context(...)``), as a
web view does. ``route`` is ``eventrouter route`` (in-process) of the example events repeated
to 60,000 lines, against a hand-written loop parsing, filtering, redacting, encoding and writing
the same two outputs. Run with ``make bench`` or ``python benchmarks/end_to_end.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import logging
import logging.handlers
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "config.yaml"
EVENTS = ROOT / "examples" / "events.jsonl"

Event = dict[str, Any]

CLOCK = time.process_time
"""The machine is shared: CPU time of this process (all its threads, kernel time included)
is what the three builds are compared on, each the median of ``--repeat`` interleaved runs."""

# The example tree's analytics branch, spelled once for the two builds that need it spelled.
ALLOW = re.compile(
    r"edx\.video\.[^.]+|edx\.course\.enrollment(\..*)?|edx\.grades(\..*)?|problem_(check|graded)"
)
REDACT_FIELDS = (
    ("context", "username"),
    ("context", "ip"),
    ("context", "agent"),
    ("data", "email"),
)
REDACTED = "[REDACTED]"


def read_examples() -> list[Event]:
    return [json.loads(line) for line in EVENTS.read_text(encoding="utf-8").splitlines() if line]


def redact(event: Event) -> Event:
    """The example's redaction, by hand: the four fields, then secret-looking keys anywhere."""
    for outer, inner in REDACT_FIELDS:
        part = event.get(outer)
        if isinstance(part, dict) and inner in part:
            part[inner] = REDACTED
    _redact_keys(event)
    return event


def _redact_keys(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and _secret(key):
                node[key] = REDACTED
            elif isinstance(value, dict | list):
                _redact_keys(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _redact_keys(item)


def _secret(key: str) -> bool:
    lowered = key.lower()
    return "password" in lowered or "token" in lowered


def plain_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_copy(item) for item in value]
    return value


def json_line() -> Callable[[Any], str]:
    """The JSON library eventrouter uses, called directly, for the hand-written limit.

    Not eventrouter's own wrapper around it: a slower wrapper must show in the ratio to the
    limit, not cancel out of it.
    """
    import json

    from eventrouter import encoding

    try:
        import orjson
    except ImportError:
        orjson = None
    if orjson is None or os.environ.get("EVENTROUTER_NO_ORJSON"):
        default = encoding.json_default
        return lambda value: json.dumps(value, default=default, separators=(",", ":"))
    options = encoding.ORJSON_OPTIONS
    default = encoding.json_default
    return lambda value: orjson.dumps(value, default=default, option=options).decode()


# -- the three in-app builds -------------------------------------------------------------------


def build_eventrouter(folder: Path) -> tuple[Callable[[Event, Event], None], Callable[[], None]]:
    import eventrouter

    os.environ["EVENTROUTER_ARCHIVE"] = str(folder / "er-archive.jsonl")
    os.environ["EVENTROUTER_ANALYTICS_PREVIEW"] = str(folder / "er-analytics.jsonl")
    tracker = eventrouter.load(str(CONFIG))

    def emit(event: Event, request: Event) -> None:
        with tracker.context("request", request):
            tracker.emit(event["name"], event["data"])

    return emit, tracker.close


def build_event_tracking(
    folder: Path,
) -> tuple[Callable[[Event, Event], None], Callable[[], None]] | None:
    try:
        from eventtracking.backends.logger import LoggerBackend
        from eventtracking.backends.routing import RoutingBackend
        from eventtracking.processors.regex_filter import RegexFilter
        from eventtracking.tracker import Tracker
    except ImportError:
        return None
    handlers = []
    for name, handler in (
        (
            "bench.et.archive",
            logging.handlers.RotatingFileHandler(
                folder / "et-archive.jsonl", maxBytes=104857600, backupCount=5
            ),
        ),
        ("bench.et.analytics", logging.FileHandler(folder / "et-analytics.jsonl")),
    ):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        handlers.append(handler)
    analytics = RoutingBackend(
        backends={"preview": LoggerBackend(name="bench.et.analytics", max_event_size=None)},
        processors=[RegexFilter(regular_expressions=[ALLOW.pattern]), redact],
    )
    tracker = Tracker(
        backends={
            "archive": LoggerBackend(name="bench.et.archive", max_event_size=None),
            "analytics": analytics,
        }
    )

    def emit(event: Event, request: Event) -> None:
        with tracker.context("request", request):
            tracker.emit(event["name"], event["data"])

    def close() -> None:
        for handler in handlers:
            handler.close()

    return emit, close


def build_hand_written(folder: Path) -> tuple[Callable[[Event, Event], None], Callable[[], None]]:
    line = json_line()
    archive = open(folder / "hw-archive.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    analytics = open(folder / "hw-analytics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    utc = dt.UTC

    def emit(event: Event, request: Event) -> None:
        envelope = {
            "id": str(uuid.uuid4()),
            "name": event["name"],
            "timestamp": dt.datetime.now(utc),
            "data": event["data"],
            "context": dict(request),
        }
        archive.write(line(envelope) + "\n")
        if ALLOW.fullmatch(envelope["name"]):
            analytics.write(line(redact(plain_copy(envelope))) + "\n")

    def close() -> None:
        archive.close()
        analytics.close()

    return emit, close


def time_in_app(
    build: Callable[[Path], tuple[Callable[[Event, Event], None], Callable[[], None]] | None],
    examples: list[Event],
    events: int,
) -> float | None:
    """CPU µs per event for ``events`` emits in fresh files, closing included."""
    with tempfile.TemporaryDirectory() as folder:
        built = build(Path(folder))
        if built is None:
            return None
        emit, close = built
        pairs = [(event, event["context"]) for event in examples]
        for event, request in pairs[:200]:  # warm-up
            emit(event, request)
        count = 0
        start = CLOCK()
        while count < events:
            for event, request in pairs:
                emit(event, request)
            count += len(pairs)
        close()
        return (CLOCK() - start) / count * 1e6


# -- route ----------------------------------------------------------------------------------


def route_eventrouter(source: Path, folder: Path) -> None:
    from eventrouter import cli

    os.environ["EVENTROUTER_ARCHIVE"] = str(folder / "route-archive.jsonl")
    os.environ["EVENTROUTER_ANALYTICS_PREVIEW"] = str(folder / "route-analytics.jsonl")
    with contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(["route", str(CONFIG), str(source), "--no-progress"])
    if status != 0:
        raise SystemExit(f"eventrouter route failed with status {status}")


def route_hand_written(source: Path, folder: Path) -> None:
    line = json_line()
    utc = dt.UTC
    with (
        open(source, "rb") as lines,
        open(folder / "hw-archive.jsonl", "w", encoding="utf-8") as archive,
        open(folder / "hw-analytics.jsonl", "w", encoding="utf-8") as analytics,
    ):
        for raw in lines:
            record = json.loads(raw)
            stamp = dt.datetime.fromisoformat(record["timestamp"]).astimezone(utc)
            event = {
                "id": str(uuid.uuid4()),
                "name": record["name"],
                "timestamp": stamp,
                "data": record["data"],
                "context": record["context"],
            }
            archive.write(line(event) + "\n")
            if ALLOW.fullmatch(event["name"]):
                analytics.write(line(redact(plain_copy(event))) + "\n")


def time_route(run: Callable[[Path, Path], None], source: Path, lines: int) -> float:
    """Events per CPU second for one run."""
    with tempfile.TemporaryDirectory() as folder:
        start = CLOCK()
        run(source, Path(folder))
        return lines / (CLOCK() - start)


@contextlib.contextmanager
def repeated_input(lines: int) -> Iterator[Path]:
    examples = [line for line in EVENTS.read_text(encoding="utf-8").splitlines() if line]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            for n in range(lines):
                out.write(examples[n % len(examples)] + "\n")
        yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30000, help="emits per in-app run")
    parser.add_argument("--lines", type=int, default=60000, help="lines routed per route run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    logging.getLogger("eventrouter").setLevel(logging.ERROR)
    from eventrouter import encoding

    examples = read_examples()
    library = "orjson" if encoding.orjson is not None else "json (orjson not in use)"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        f"JSON library: {library}; {len(examples)} example events; "
        f"medians of {args.repeat} interleaved runs"
    )

    print("in-app (emit in a request context, both JSON logs written), CPU time:")
    builds = {
        "eventrouter": build_eventrouter,
        "event-tracking": build_event_tracking,
        "hand-written": build_hand_written,
    }
    samples: dict[str, list[float]] = {name: [] for name in builds}
    for _ in range(args.repeat):  # interleaved, so that load on the machine hits all three
        for name, build in builds.items():
            us = time_in_app(build, examples, args.events)
            if us is not None:
                samples[name].append(us)
    in_app = {
        name: statistics.median(values) if values else None for name, values in samples.items()
    }
    for name, us in in_app.items():
        shown = f"{us:8.2f} µs/event" if us is not None else "not installed"
        print(f"  {name:<15} {shown}")
    ours, limit, theirs = in_app["eventrouter"], in_app["hand-written"], in_app["event-tracking"]
    assert ours is not None
    assert limit is not None
    if theirs is not None:
        print(f"  event-tracking / eventrouter: {theirs / ours:.2f}x (target >= 3x)")
    else:
        print("  event-tracking: pip install --no-deps event-tracking==4.0.2 pytz", file=sys.stderr)
    print(f"  eventrouter / hand-written:   {ours / limit:.2f}x (target <= 1.5x)")

    print(f"route ({args.lines} lines, both JSON logs written), CPU time:")
    with repeated_input(args.lines) as source:
        rates: dict[str, list[float]] = {"ours": [], "limit": []}
        for _ in range(args.repeat):  # interleaved too
            rates["ours"].append(time_route(route_eventrouter, source, args.lines))
            rates["limit"].append(time_route(route_hand_written, source, args.lines))
    route_ours, route_limit = statistics.median(rates["ours"]), statistics.median(rates["limit"])
    print(f"  eventrouter route {route_ours:10.0f} events/s")
    print(f"  hand-written      {route_limit:10.0f} events/s")
    print(f"  hand-written / eventrouter: {route_limit / route_ours:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
