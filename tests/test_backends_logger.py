"""LoggerBackend: JSON lines parsed back, rotation, encodings, oversize events, logger mode."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import logging
import logging.handlers
import os
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter

from eventrouter import DeliveryError, RoutingBackend, build_event, encoding
from eventrouter.backends import _jsonlines, _linefile
from eventrouter.backends.logger import EventJsonFormatter, LoggerBackend, event_formatter
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import OptionError
from eventrouter.typing import Event


@pytest.fixture(
    autouse=True,
    params=[
        "json",
        pytest.param(
            "orjson",
            marks=pytest.mark.skipif(encoding.orjson is None, reason="orjson not in use"),
        ),
    ],
)
def formatter_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the standard library's formatter and with orjson's."""
    if request.param == "json":
        monkeypatch.setattr(_jsonlines, "EventOrjsonFormatter", None)
    kind: str = request.param
    return kind


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def event(name: str = "video.played", **data: Any) -> Event:
    return build_event(name, data or {"video": "intro"}, context={"user_id": 7})


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "deep" / "events.log"


@pytest.fixture
def captured_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A named logger of the test's own, writing to a string buffer, not propagating."""
    logger = logging.getLogger(f"test.events.{uuid.uuid4().hex}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_each_event_is_one_line_whose_top_level_is_the_envelope(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path)
    first, second = event("a.one"), event("a.two")
    backend.send(first)
    backend.send(second)
    backend.close()
    written = lines(log_path)
    assert [set(line) for line in written] == [{"id", "name", "timestamp", "data", "context"}] * 2
    assert [(line["id"], line["name"]) for line in written] == [
        (first["id"], "a.one"),
        (second["id"], "a.two"),
    ]
    assert written[0]["data"] == {"video": "intro"}
    assert written[0]["context"] == {"user_id": 7}


def test_missing_folders_of_the_path_are_created(log_path: Path) -> None:
    LoggerBackend(path=log_path).send(event())
    assert log_path.is_file()


def test_timestamp_is_iso_8601_in_utc(log_path: Path) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    backend = LoggerBackend(path=log_path)
    backend.send({**event(), "timestamp": dt.datetime(2024, 5, 1, 14, 0, tzinfo=paris)})
    backend.close()
    assert lines(log_path)[0]["timestamp"] == "2024-05-01T12:00:00+00:00"


def test_awkward_values_get_the_documented_encoding(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path)
    backend.send(
        event(
            price=Decimal("9.90"),
            ref=uuid.UUID(int=5),
            blob=b"\x01\x02",
            tags={"b", "a"},
            opaque=object.__new__(type("Thing", (), {"__str__": lambda self: "thing"})),
        )
    )
    backend.close()
    assert lines(log_path)[0]["data"] == {
        "price": "9.90",
        "ref": "00000000-0000-0000-0000-000000000005",
        "blob": "AQI=",
        "tags": ["a", "b"],
        "opaque": "thing",
    }


def test_sending_does_not_modify_the_event(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=120)
    original = event(text="x" * 500, tags={"a"})
    kept = copy.deepcopy(original)
    backend.send(original)
    assert original == kept


def test_an_event_without_name_or_id_is_still_written(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path)
    backend.send({"data": {"a": 1}})
    backend.close()
    assert lines(log_path) == [{"data": {"a": 1}}]


def test_oversize_event_is_written_with_data_truncated_and_marked(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=300)
    big = event(text="y" * 2000)
    backend.send(big)
    backend.close()
    (line,) = lines(log_path)
    assert line["id"] == big["id"]
    assert line["name"] == big["name"]
    assert isinstance(line["data"], str)
    assert '{"text":"yyy'.startswith(line["data"][:10])
    assert line["truncated"]["max_event_size"] == 300
    assert line["truncated"]["original_size"] > 2000


def test_a_truncated_line_fits_max_event_size(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=300)
    backend.send(event(text='q"\\' * 900))
    backend.close()
    (raw,) = log_path.read_text(encoding="utf-8").splitlines()
    assert len(raw) <= 300
    assert len(raw) >= 295  # as much data as fits is kept


@pytest.mark.parametrize(
    "rotation",
    [{}, {"max_bytes": 1_000_000}, {"when": "D"}],
    ids=["plain", "max_bytes", "when"],
)
def test_truncated_events_are_counted_once_each(log_path: Path, rotation: dict[str, Any]) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=300, **rotation)
    backend.send(event(text="small"))
    backend.send(event(text="z" * 1000))
    backend.send(event(text="z" * 1000))
    backend.close()
    assert backend.stats()["truncated"] == 2
    assert [isinstance(line["data"], str) for line in lines(log_path)] == [False, True, True]


def test_event_formatter_formats_a_record_once_on_a_size_rotating_handler(
    captured_logger: tuple[logging.Logger, io.StringIO], tmp_path: Path
) -> None:
    logger, _stream = captured_logger
    formatter = EventJsonFormatter(max_event_size=300)
    handler = logging.handlers.RotatingFileHandler(tmp_path / "app.log", maxBytes=1_000_000)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    try:
        LoggerBackend(logger_name=logger.name).send(event(text="z" * 1000))
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert formatter.truncated == 1


def test_an_event_that_cannot_be_truncated_to_fit_is_dropped_and_counted(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=50)
    backend.send({**event(), "context": {"blob": "c" * 500}})
    backend.send(event(text="small"))
    backend.close()
    assert not log_path.exists() or log_path.read_text() == ""
    assert backend.stats()["dropped"] == 2
    assert backend.stats()["truncated"] == 0


def test_size_rotation_keeps_the_configured_backups(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, max_bytes=1000, backup_count=2)
    for n in range(60):
        backend.send(event(n=n))
    backend.close()
    files = sorted(p.name for p in log_path.parent.iterdir())
    assert files == ["events.log", "events.log.1", "events.log.2"]
    for name in files:
        assert (log_path.parent / name).stat().st_size <= 1000
        assert all(line["name"] == "video.played" for line in lines(log_path.parent / name))
    assert lines(log_path)[-1]["data"] == {"n": 59}


def test_time_rotation_moves_a_file_from_an_earlier_day_aside(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_text('{"old": true}\n', encoding="utf-8")
    two_days_ago = time.time() - 2 * 86400
    os.utime(log_path, (two_days_ago, two_days_ago))
    backend = LoggerBackend(path=log_path, when="D", backup_count=3)
    backend.send(event("fresh"))
    backend.close()
    rotated = [p for p in log_path.parent.iterdir() if p != log_path]
    assert len(rotated) == 1
    assert lines(rotated[0]) == [{"old": True}]
    assert [line["name"] for line in lines(log_path)] == ["fresh"]


def test_a_path_that_cannot_be_written_raises_delivery_error(tmp_path: Path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    backend = LoggerBackend(path=folder)
    with pytest.raises(DeliveryError):
        backend.send(event())


def test_logger_mode_plain_formatter_gets_the_json_line(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured_logger
    sent = event()
    LoggerBackend(logger_name=logger.name).send(sent)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["id"] == sent["id"]


def test_logger_mode_json_formatter_puts_the_envelope_at_top_level(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured_logger
    logger.handlers[0].setFormatter(JsonFormatter())
    sent = event()
    LoggerBackend(logger_name=logger.name).send(sent)
    line = json.loads(stream.getvalue())
    assert (line["id"], line["name"], line["data"]) == (sent["id"], sent["name"], sent["data"])


def test_logger_mode_respects_the_level(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured_logger
    LoggerBackend(logger_name=logger.name, level="debug").send(event("below.level"))
    assert stream.getvalue() == ""
    LoggerBackend(logger_name=logger.name, level="warning").send(event("at.level"))
    (line,) = stream.getvalue().splitlines()  # the same mode writes what the level lets by
    assert json.loads(line)["name"] == "at.level"


def test_events_below_the_loggers_level_are_counted_as_suppressed(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, _stream = captured_logger
    backend = LoggerBackend(logger_name=logger.name, level="debug")
    backend.send(event())
    backend.send(event())
    assert backend.stats()["suppressed"] == 2


def test_suppressed_events_are_warned_about_once_without_their_data(
    captured_logger: tuple[logging.Logger, io.StringIO], caplog: pytest.LogCaptureFixture
) -> None:
    logger, _stream = captured_logger
    backend = LoggerBackend(logger_name=logger.name, level="debug")
    with caplog.at_level(logging.WARNING, logger="eventrouter.backends.logger"):
        backend.send(event(secret="s3cr3t"))
        backend.send(event(secret="s3cr3t"))
    warnings = [r for r in caplog.records if r.name == "eventrouter.backends.logger"]
    assert len(warnings) == 1
    assert logger.name in warnings[0].getMessage()
    assert "s3cr3t" not in caplog.text


def test_written_events_are_not_counted_as_suppressed(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured_logger
    backend = LoggerBackend(logger_name=logger.name)
    backend.send(event())
    assert stream.getvalue() != ""
    assert backend.stats()["suppressed"] == 0


def test_logger_mode_truncates_too(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured_logger
    backend = LoggerBackend(logger_name=logger.name, max_event_size=300)
    backend.send(event(text="w" * 1000))
    assert len(stream.getvalue().strip()) <= 300
    assert backend.stats()["truncated"] == 1


def test_event_formatter_can_serve_an_apps_own_handler(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured_logger
    logger.handlers[0].setFormatter(EventJsonFormatter())
    sent = event()
    LoggerBackend(logger_name=logger.name).send(sent)
    assert set(json.loads(stream.getvalue())) == {"id", "name", "timestamp", "data", "context"}


def test_path_and_logger_name_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either path or logger_name"):
        LoggerBackend(path=tmp_path / "a.log", logger_name="x")


def test_path_or_logger_name_is_required() -> None:
    with pytest.raises(ValueError, match=r"path .* logger_name"):
        LoggerBackend()


def test_an_empty_logger_name_means_the_root_logger(caplog: pytest.LogCaptureFixture) -> None:
    sent = event()
    with caplog.at_level(logging.INFO):
        LoggerBackend(logger_name="").send(sent)
    (record,) = [r for r in caplog.records if r.name == "root"]
    assert json.loads(record.getMessage())["id"] == sent["id"]


def test_an_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown logging level"):
        LoggerBackend(logger_name="x", level="LOUD")


# -- python-json-logger produces the lines --------------------------------------------------------


def test_lines_come_from_a_python_json_logger_formatter(formatter_kind: str) -> None:
    from pythonjsonlogger.core import BaseJsonFormatter

    formatter = event_formatter()
    assert isinstance(formatter, BaseJsonFormatter)
    expected = "OrjsonFormatter" if formatter_kind == "orjson" else "JsonFormatter"
    assert expected in [cls.__name__ for cls in type(formatter).__mro__]


def test_file_lines_go_through_the_formatters_json_default_hook(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LoggerBackend(path=log_path)
    monkeypatch.setattr(
        backend._formatter, "json_default", lambda value: f"<{type(value).__name__}>"
    )
    backend.send(event(price=Decimal("1.50")))
    backend.close()
    [line] = lines(log_path)
    assert line["data"] == {"price": "<Decimal>"}
    assert line["timestamp"] == "<datetime>"


def test_file_lines_are_made_by_the_formatters_serializer(
    log_path: Path, formatter_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LoggerBackend(path=log_path)
    formatter = backend._formatter
    if formatter_kind == "json":  # python-json-logger's JsonFormatter calls json_serializer
        monkeypatch.setattr(formatter, "json_serializer", lambda data, **options: '{"by":"hook"}')
    else:  # its OrjsonFormatter's serializer is jsonify_log_record
        monkeypatch.setattr(formatter, "jsonify_log_record", lambda data: '{"by":"hook"}')
    monkeypatch.setattr(formatter, "prefix", "")
    backend.send(event())
    backend.close()
    assert lines(log_path) == [{"by": "hook"}]


def test_file_lines_go_through_the_formatters_process_log_record(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LoggerBackend(path=log_path)
    monkeypatch.setattr(backend._formatter, "process_log_record", lambda data: {"id": data["id"]})
    sent = event()
    backend.send(sent)
    backend.close()
    assert lines(log_path) == [{"id": sent["id"]}]


def test_two_logs_writing_the_same_and_different_timestamps_write_each_right(
    tmp_path: Path,
) -> None:
    first, second = LoggerBackend(path=tmp_path / "a.log"), LoggerBackend(path=tmp_path / "b.log")
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    stamps = [
        when,
        when,
        when.astimezone(dt.timezone(dt.timedelta(hours=2))),
        when + dt.timedelta(microseconds=1),
        dt.datetime(2024, 5, 1, 12, 0),  # naive: taken as UTC
    ]
    for stamp in stamps:
        sent = {"id": "x", "timestamp": stamp, "data": {"at": stamp}}
        first.send(sent)
        second.send(sent)
    first.close()
    second.close()
    expected = [encoding.dumps(stamp).strip('"') for stamp in stamps]
    for name in ("a.log", "b.log"):
        written = lines(tmp_path / name)
        assert [line["timestamp"] for line in written] == expected
        assert [line["data"]["at"] for line in written] == expected


def test_file_and_logger_modes_write_the_same_line(
    log_path: Path, captured_logger: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = captured_logger
    sent = event(price=Decimal("1.50"), when=dt.date(2024, 5, 1), text="é")
    to_file = LoggerBackend(path=log_path)
    to_file.send(sent)
    to_file.close()
    LoggerBackend(logger_name=logger.name).send(sent)
    assert log_path.read_text(encoding="utf-8") == stream.getvalue()
    assert stream.getvalue() == encoding.dumps(sent) + "\n"


# -- when lines reach the OS ----------------------------------------------------------------------


def test_a_line_accepted_before_flush_is_on_disk_after_it(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, flush_interval=3600)
    sent = event()
    backend.send(sent)
    assert not log_path.exists() or log_path.read_text(encoding="utf-8") == ""  # in memory
    backend.flush()
    assert [line["id"] for line in lines(log_path)] == [sent["id"]]


def test_a_batch_accepted_before_flush_is_on_disk_after_it(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, flush_interval=3600)
    batch = [event(n=n) for n in range(50)]
    backend.send_batch(batch)
    backend.flush()
    assert [line["id"] for line in lines(log_path)] == [e["id"] for e in batch]
    assert backend.stats()["written"] == 50


@pytest.mark.slow
def test_an_accepted_line_reaches_the_os_within_the_flush_interval_without_flush(
    log_path: Path,
) -> None:
    backend = LoggerBackend(path=log_path, flush_interval=0.05)
    backend.send(event())
    deadline = time.monotonic() + 30  # a generous bound, not a timing assertion
    while time.monotonic() < deadline and not (log_path.exists() and log_path.stat().st_size):
        time.sleep(0.01)
    assert len(lines(log_path)) == 1
    backend.close()


def test_a_flush_interval_of_zero_writes_each_line_at_once(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, flush_interval=0)
    backend.send(event())
    assert len(lines(log_path)) == 1
    backend.close()


@pytest.mark.slow
def test_lines_waiting_at_interpreter_exit_are_written(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "exit.log"
    program = (
        "from eventrouter.backends.logger import LoggerBackend\n"
        f"backend = LoggerBackend(path={str(path)!r}, flush_interval=3600)\n"
        "backend.send({'id': 'x', 'name': 'at.exit'})\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=120)
    assert lines(path) == [{"id": "x", "name": "at.exit"}]


# -- rotation by position -------------------------------------------------------------------------


def test_rotation_happens_at_the_size_without_looking_the_file_up_per_event(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LoggerBackend(path=log_path, max_bytes=2000, backup_count=3, flush_interval=0)
    backend.send(event(n=-1))  # opens the file
    lookups = 0
    real_stat = os.stat

    def counting_stat(*args: Any, **kwargs: Any) -> Any:
        nonlocal lookups
        lookups += 1
        return real_stat(*args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    for n in range(200):
        backend.send(event(n=n))
    monkeypatch.undo()
    backend.close()
    files = sorted(p.name for p in log_path.parent.iterdir())
    assert files == ["events.log", "events.log.1", "events.log.2", "events.log.3"]
    assert all((log_path.parent / name).stat().st_size <= 2000 for name in files)
    assert lines(log_path)[-1]["data"] == {"n": 199}
    assert lookups == 0


def test_rotation_counts_the_lines_still_in_memory(log_path: Path) -> None:
    backend = LoggerBackend(path=log_path, max_bytes=1500, backup_count=1, flush_interval=3600)
    for n in range(12):
        backend.send(event(n=n))
    backend.close()
    assert log_path.stat().st_size <= 1500
    assert (log_path.parent / "events.log.1").stat().st_size <= 1500


# -- faults ---------------------------------------------------------------------------------------


def test_a_full_disk_keeps_lines_then_counts_what_close_could_not_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = LoggerBackend(path="/dev/full", flush_interval=0)
    with caplog.at_level(logging.WARNING, logger="eventrouter.backends.logger"):
        for n in range(3):
            backend.send(event(secret="s3cr3t", n=n))  # accepted: kept in memory
        backend.close()
    stats = backend.stats()
    assert stats["written"] == 3
    assert stats["lost"] == 3
    assert stats["write_errors"] >= 2
    assert "s3cr3t" not in caplog.text
    assert len([r for r in caplog.records if "could not write" in r.getMessage()]) == 1


@pytest.mark.parametrize("flush_interval", [0, 1.0])
def test_while_the_disk_is_full_sends_only_append_and_the_timer_and_flush_retry(
    monkeypatch: pytest.MonkeyPatch, flush_interval: float
) -> None:
    monkeypatch.setattr(_linefile, "_RETRY_INTERVAL", 3600)  # no timer retry during the test
    monkeypatch.setattr(_linefile, "_CHUNK", 1000)  # a write is due after a few lines
    backend = LoggerBackend(path="/dev/full", flush_interval=flush_interval)
    for n in range(2000):
        backend.send(event(n=n))
    stats = backend.stats()
    assert stats["written"] == 2000  # accepted, waiting
    assert stats["write_errors"] == 1  # the first write that was due; none since
    backend.flush()
    assert backend.stats()["write_errors"] == 2
    file = backend._file
    assert isinstance(file, _linefile.LineFile)
    assert file.due() is not None  # the timer will try again
    backend.close()
    assert backend.stats()["lost"] == 2000


def test_lines_kept_while_the_disk_was_full_reach_it_when_it_has_room_again(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file size limit (RLIMIT_FSIZE, EFBIG) stands in for a full disk, then is lifted."""
    import resource
    import signal

    monkeypatch.setattr(_linefile, "_RETRY_INTERVAL", 0.01)
    log_path.parent.mkdir(parents=True)
    sent = [event(n=n) for n in range(30)]
    pid = os.fork()
    if pid == 0:  # the child: a limit of its own
        code = 1
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
            backend = LoggerBackend(path=log_path, flush_interval=0)
            for one in sent:
                backend.send(one)
            failed = backend.stats()["write_errors"]
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            file = backend._file
            assert isinstance(file, _linefile.LineFile)
            deadline = time.monotonic() + 60  # a generous bound, not a timing assertion
            while time.monotonic() < deadline and file.due() is not None:  # the timer writes
                time.sleep(0.01)
            code = 0 if failed == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [line["id"] for line in lines(log_path)] == [one["id"] for one in sent]


def test_a_full_disk_with_too_much_waiting_refuses_lines_so_the_router_dead_letters_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_linefile, "_MAX_PENDING", 2000)
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    router = RoutingBackend(
        {"log": LoggerBackend(path="/dev/full", flush_interval=0)}, dead_letter=dead
    )
    sent = [event(n=n) for n in range(20)]
    for one in sent:
        router.send(one)
    backend = router.backends["log"]
    accepted = backend.stats()["written"]
    refused = [json.loads(line)["event"]["id"] for line in dead.path.read_text().splitlines()]
    assert 0 < accepted < 20
    assert refused == [one["id"] for one in sent[accepted:]]
    backend.close()
    assert backend.stats()["lost"] == accepted


def test_a_forked_child_writes_even_if_the_lock_was_held_and_leaves_the_parents_lines(
    log_path: Path,
) -> None:
    import threading

    backend = LoggerBackend(path=log_path, flush_interval=3600)
    backend.send({"id": "parent-1"})
    file = backend._file
    assert isinstance(file, _linefile.LineFile)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with file._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the child: the holder thread does not exist here
        try:
            backend.send({"id": "child"})
            backend.close()
        finally:
            os._exit(0)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    backend.send({"id": "parent-2"})
    backend.close()
    assert sorted(line["id"] for line in lines(log_path)) == ["child", "parent-1", "parent-2"]


def _process_libraries() -> list[Any]:
    import multiprocessing

    found: list[Any] = [pytest.param(multiprocessing, id="multiprocessing")]
    try:
        import billiard
    except ImportError:  # pragma: no cover - billiard comes with the celery extra
        return found
    return [*found, pytest.param(billiard, id="billiard")]


@pytest.mark.parametrize("library", _process_libraries())
def test_lines_accepted_in_a_library_child_that_returns_are_written_at_its_exit(
    log_path: Path, library: Any
) -> None:
    """multiprocessing and billiard (Celery prefork) children end with os._exit."""
    backend = LoggerBackend(path=log_path, flush_interval=3600)

    def work(which: int) -> None:
        for n in range(100):
            backend.send({"id": f"child-{which}-{n}"})

    for which in (1, 2):  # each child of the same parent
        child = library.get_context("fork").Process(target=work, args=(which,))
        child.start()
        child.join()
        assert child.exitcode == 0
    expected = [f"child-{which}-{n}" for which in (1, 2) for n in range(100)]
    assert [line["id"] for line in lines(log_path)] == expected
    backend.close()


# -- max_event_size, oversize and the event-tracking line format ----------------------------------


@pytest.mark.parametrize("limit", [10, 150, 200, 260, 400, 1000])
def test_truncate_writes_only_lines_within_the_limit_and_counts_every_event(
    log_path: Path, limit: int
) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=limit)
    sent = [event(text=text) for text in ("", "a" * 50, 'q"\\' * 100, "é" * 300, "z" * 5000)]
    for one in sent:
        backend.send(one)
    backend.close()
    raw = log_path.read_text(encoding="utf-8").splitlines() if log_path.exists() else []
    assert all(len(line) <= limit for line in raw)
    stats = backend.stats()
    assert len(raw) + stats["dropped"] == len(sent)
    if limit == 10:
        assert stats["dropped"] == len(sent)


def test_oversize_drop_drops_counts_and_dead_letters_with_the_node_path(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    backend = LoggerBackend(
        path=tmp_path / "out.log", max_event_size=400, oversize="drop", dead_letter=dead
    )
    RoutingBackend({"tracking": RoutingBackend({"log": backend})})
    backend.bind_path("tracking.log")  # what the router does once node paths land
    small, big = event(text="s"), event(text="b" * 1000)
    backend.send(small)
    backend.send(big)
    backend.close()
    assert [line["id"] for line in lines(tmp_path / "out.log")] == [small["id"]]
    assert backend.stats()["dropped"] == 1
    (record,) = [json.loads(line) for line in dead.path.read_text().splitlines()]
    assert record["event"]["id"] == big["id"]
    assert record.get("destination", record.get("backend")) == "tracking.log"
    assert record["error"] == "oversize"


def test_a_dropped_event_is_logged_once_with_name_and_id_not_data(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=100, oversize="drop")
    first = event(secret="s3cr3t" * 50)
    with caplog.at_level(logging.WARNING, logger="eventrouter.backends.logger"):
        backend.send(first)
        backend.send(event(secret="s3cr3t" * 50))
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert first["id"] in record.getMessage()
    assert "s3cr3t" not in caplog.text
    assert backend.stats()["dropped"] == 2


def event_tracking_line(sent: Event) -> str:
    """What event-tracking 4.0.2's LoggerBackend wrote: json.dumps with its date encoder."""

    def default(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).isoformat()
        raise TypeError

    reordered = {key: value for key, value in sent.items() if key != "id"}
    reordered["id"] = sent["id"]
    return json.dumps(reordered, default=default)


def test_the_event_tracking_line_format_is_what_event_tracking_wrote_with_id_last(
    log_path: Path,
) -> None:
    sent = event(text="é", nested={"a": [1, 2.5, None, True]})
    backend = LoggerBackend(path=log_path, line_format="event-tracking")
    backend.send(sent)
    backend.close()
    (line,) = log_path.read_text(encoding="utf-8").splitlines()
    assert line == event_tracking_line(sent)
    assert list(json.loads(line)) == ["name", "timestamp", "data", "context", "id"]
    assert f'"name": "{sent["name"]}"' in line


def test_event_tracking_loggers_get_the_line_as_message(
    captured_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured_logger
    logger.handlers[0].setFormatter(JsonFormatter())
    sent = event()
    LoggerBackend(logger_name=logger.name, line_format="event-tracking").send(sent)
    assert json.loads(stream.getvalue())["message"] == event_tracking_line(sent)


def test_event_tracking_lines_match_event_tracking_itself(
    captured_logger: tuple[logging.Logger, io.StringIO], log_path: Path
) -> None:
    et_logger = pytest.importorskip("eventtracking.backends.logger")
    logger, stream = captured_logger
    sent = event(text="é")
    et_logger.LoggerBackend(name=logger.name, max_event_size=None).send(
        {key: value for key, value in sent.items() if key != "id"} | {"id": sent["id"]}
    )
    ours = LoggerBackend(path=log_path, line_format="event-tracking")
    ours.send(sent)
    ours.close()
    assert log_path.read_text(encoding="utf-8") == stream.getvalue()


@pytest.mark.parametrize("limit", [300, 1024])
def test_event_tracking_lines_keep_and_drop_the_events_event_tracking_kept_and_dropped(
    captured_logger: tuple[logging.Logger, io.StringIO], log_path: Path, limit: int
) -> None:
    et_logger = pytest.importorskip("eventtracking.backends.logger")
    logger, stream = captured_logger
    theirs = et_logger.LoggerBackend(name=logger.name, max_event_size=limit)
    ours = LoggerBackend(
        path=log_path, max_event_size=limit, oversize="drop", line_format="event-tracking"
    )
    sent = [event(text="x" * n) for n in range(limit - 260, limit)]
    for one in sent:
        theirs.send({key: value for key, value in one.items() if key != "id"})
        ours.send(one)
    ours.close()
    kept_theirs = [json.loads(line)["data"]["text"] for line in stream.getvalue().splitlines()]
    kept_ours = [line["data"]["text"] for line in lines(log_path)]
    assert kept_ours == kept_theirs
    assert 0 < len(kept_ours) < len(sent)  # the boundary lies inside the range sent
    assert ours.stats()["dropped"] == len(sent) - len(kept_ours)


def test_event_tracking_lines_truncate_to_the_limit_without_counting_the_id(
    log_path: Path,
) -> None:
    backend = LoggerBackend(path=log_path, max_event_size=300, line_format="event-tracking")
    backend.send(event(text="y" * 1000))
    backend.close()
    (line,) = log_path.read_text(encoding="utf-8").splitlines()
    without_id, _, _ = line.rpartition(', "id": ')
    assert len(without_id) + 1 in range(290, 301)
    assert json.loads(line)["truncated"]["max_event_size"] == 300


def test_bad_oversize_and_line_format_are_refused(log_path: Path) -> None:
    with pytest.raises(ValueError, match="oversize"):
        LoggerBackend(path=log_path, oversize="cut")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line_format"):
        LoggerBackend(path=log_path, line_format="legacy")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_backend_dropped_without_close_still_writes_what_it_accepted(log_path: Path) -> None:
    import gc

    backend = LoggerBackend(path=log_path, flush_interval=3600)
    sent = event()
    backend.send(sent)
    del backend
    gc.collect()
    deadline = time.monotonic() + 30  # the flush thread may hold it a moment: a bound, no timing
    while time.monotonic() < deadline and not (log_path.exists() and log_path.stat().st_size):
        time.sleep(0.01)
    assert [line["id"] for line in lines(log_path)] == [sent["id"]]


@pytest.mark.parametrize("path", ["", "  "])
def test_an_empty_path_is_refused(path: str) -> None:
    with pytest.raises(OptionError) as caught:
        LoggerBackend(path=path)
    assert caught.value.option == "path"
