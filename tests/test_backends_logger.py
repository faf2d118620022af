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

from eventrouter import DeliveryError, build_event
from eventrouter.backends.logger import EventJsonFormatter, LoggerBackend
from eventrouter.typing import Event


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
    LoggerBackend(logger_name=logger.name, level="debug").send(event())
    assert stream.getvalue() == ""


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
