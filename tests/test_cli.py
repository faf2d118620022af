"""Specification of the ``eventrouter`` command line, run as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "examples" / "config.yaml"
EXAMPLE_EVENTS = REPO / "examples" / "events.jsonl"
DEADLINE = 60.0
"""Seconds to wait for a subprocess to reach a state; generous so slow machines pass."""

GOOD = """\
backends:
  archive:
    class: jsonlog
    options: {path: out/archive.jsonl}
  analytics:
    processors:
      - class: name_filter
        options: {allow: ["video.*"]}
    backends:
      inbox: {class: jsonlog, options: {path: out/inbox.jsonl}}
      segment:
        class: segment
        enabled: false
        options: {write_key: very-secret-key}
"""

BAD = """\
backends:
  archive:
    class: jsonlogg
  other:
    class: memory
    options: {max_event: 3}
"""


def clean_env() -> dict[str, str]:
    """The environment without any variable the example config reads."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SEGMENT_", "MONGODB_", "EVENTROUTER_"))
    }


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventrouter", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=DEADLINE,
        check=False,
    )


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    return path


def test_validate_valid_config_exits_0_with_one_line(good: Path, tmp_path: Path) -> None:
    result = run("validate", str(good), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1
    assert "valid" in result.stdout
    assert "3 backends" in result.stdout
    assert result.stderr == ""


def test_validate_invalid_config_exits_2_with_every_error(bad: Path, tmp_path: Path) -> None:
    result = run("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}:3 at backends.archive.class" in result.stderr
    assert f"{bad}:6 at backends.other.options.max_event" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_validate_missing_file_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run("validate", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_prints_usage_and_exits_2(tmp_path: Path) -> None:
    result = run(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage:" in result.stderr


@pytest.mark.parametrize("command", ["validate", "tree", "route"])
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    result = run(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert f"usage: eventrouter {command}" in result.stdout


def test_tree_draws_nodes_masks_secrets_and_marks_disabled(good: Path, tmp_path: Path) -> None:
    result = run("tree", str(good), cwd=tmp_path)
    assert result.returncode == 0
    for text in ("archive: jsonlog", "analytics: router", "name_filter", "inbox: jsonlog"):
        assert text in result.stdout
    assert "write_key=***" in result.stdout
    assert "very-secret-key" not in result.stdout
    segment_line = next(line for line in result.stdout.splitlines() if "segment:" in line)
    assert "[disabled]" in segment_line


def test_tree_of_invalid_config_exits_2(bad: Path, tmp_path: Path) -> None:
    result = run("tree", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def event_line(name: str, **extra: object) -> str:
    return json.dumps({"name": name, "data": {"n": 1}, **extra})


def test_route_skips_malformed_lines_reports_their_numbers_and_exits_1(
    good: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                event_line("video.played", timestamp="2024-05-01T10:00:00Z"),
                "{not json",
                event_line("problem.check"),
                json.dumps({"data": {}}),
                "",
                event_line("video.paused", context={"user_id": 7}),
                json.dumps({"name": "x", "data": [1]}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = run("route", str(good), str(events), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{events}:2: skipped: not valid JSON" in result.stderr
    assert f"{events}:4: skipped: `name` is missing" in result.stderr
    assert f"{events}:7: skipped: `data` must be a JSON object" in result.stderr
    assert "Traceback" not in result.stderr
    archive = (tmp_path / "out" / "archive.jsonl").read_text().splitlines()
    inbox = (tmp_path / "out" / "inbox.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in archive] == [
        "video.played",
        "problem.check",
        "video.paused",
    ]
    assert [json.loads(line)["name"] for line in inbox] == ["video.played", "video.paused"]


def test_route_summary_counts_read_rejected_and_per_backend(good: Path, tmp_path: Path) -> None:
    stdin = "\n".join([event_line("video.played"), "oops", event_line("other.thing")]) + "\n"
    result = run("route", str(good), "-", cwd=tmp_path, stdin=stdin)
    rows = {
        cells[0]: cells[1:]
        for line in result.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("│┃ ").split("│") if c.strip()])
    }
    assert rows["read"] == ["3"]
    assert rows["rejected (malformed)"] == ["1"]
    assert rows["routed"] == ["2"]
    assert rows["archive"][:3] == ["jsonlog", "2", "0"]
    assert rows["analytics"][:3] == ["router", "2", "0"]
    assert rows["analytics.inbox"][:3] == ["jsonlog", "1", "0"]
    assert rows["analytics.segment"][-1] == "disabled"


def test_route_reads_standard_input_by_default(good: Path, tmp_path: Path) -> None:
    result = run("route", str(good), cwd=tmp_path, stdin=event_line("video.played") + "\n")
    assert result.returncode == 0
    assert len((tmp_path / "out" / "archive.jsonl").read_text().splitlines()) == 1


def test_example_config_validates_with_no_environment(tmp_path: Path) -> None:
    result = run("validate", str(EXAMPLE_CONFIG), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "disabled" in result.stdout


def test_example_events_route_through_the_example_config(tmp_path: Path) -> None:
    result = run("route", str(EXAMPLE_CONFIG), str(EXAMPLE_EVENTS), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    total = len(EXAMPLE_EVENTS.read_text().splitlines())
    archive = (tmp_path / "out" / "archive.jsonl").read_text().splitlines()
    analytics = [json.loads(line) for line in (tmp_path / "out" / "analytics.jsonl").open()]
    assert len(archive) == total
    assert 0 < len(analytics) < total
    assert all(event["context"]["ip"] == "[REDACTED]" for event in analytics)
    assert "out/archive.jsonl" in result.stdout


def test_example_events_file_is_what_the_generator_makes() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from make_events import make_events
    finally:
        sys.path.remove(str(REPO / "scripts"))
    lines = [json.loads(line) for line in EXAMPLE_EVENTS.read_text().splitlines()]
    assert lines == make_events()
    assert len(lines) >= 200


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is POSIX")
def test_interrupt_flushes_and_prints_the_summary(good: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "eventrouter", "route", str(good), "-"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdin is not None
    process.stdin.write(event_line("video.played") + "\n" + event_line("video.paused") + "\n")
    process.stdin.flush()
    archive = tmp_path / "out" / "archive.jsonl"
    deadline = time.monotonic() + DEADLINE
    while not (archive.exists() and len(archive.read_text().splitlines()) == 2):
        assert time.monotonic() < deadline, "the two events were never routed"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # stdin stays open: the loop is waiting for input
    assert process.wait(timeout=DEADLINE) == 130
    stdout, stderr = process.communicate(timeout=DEADLINE)
    assert "interrupted after 2 lines" in stderr
    assert "Traceback" not in stderr
    assert "routed" in stdout


def test_route_counts_what_an_asynchronous_backend_gives_up_on_and_exits_1(
    tmp_path: Path,
) -> None:
    (tmp_path / "giving_up.py").write_text(
        textwrap.dedent(
            """
            class GivesUpLater:
                '''Accepts every event, and gives up on each when closed.'''

                def __init__(self):
                    self.queued, self.failed = 0, 0

                def send(self, event):
                    self.queued += 1

                def close(self):
                    self.failed, self.queued = self.failed + self.queued, 0

                def stats(self):
                    return {"failed": self.failed}
            """
        )
    )
    config = tmp_path / "routing.yaml"
    config.write_text("backends:\n  later: {class: giving_up.GivesUpLater}\n  kept: memory\n")
    stdin = "\n".join(event_line("video.played") for _ in range(3)) + "\n"
    result = run("route", str(config), "-", cwd=tmp_path, stdin=stdin)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {
        cells[0]: cells[1:]
        for line in result.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("│┃ ").split("│") if c.strip()])
    }
    assert rows["later"][1:3] == ["0", "3"]  # delivered, failed
    assert rows["kept"][1:3] == ["3", "0"]


def test_route_skips_a_line_nested_too_deeply_instead_of_crashing(
    good: Path, tmp_path: Path
) -> None:
    deep = '{"name": "deep", "data": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    stdin = "\n".join([event_line("video.played"), deep, event_line("video.paused")]) + "\n"
    result = run("route", str(good), "-", cwd=tmp_path, stdin=stdin)
    assert result.returncode == 1
    assert "<stdin>:2: skipped: nested too deeply to read" in result.stderr
    assert "Traceback" not in result.stderr
    archive = (tmp_path / "out" / "archive.jsonl").read_text().splitlines()
    assert len(archive) == 2


def test_route_accepts_a_file_starting_with_a_utf8_bom(good: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\xef\xbb\xbf" + (event_line("video.played") + "\n").encode())
    result = run("route", str(good), str(events), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def _route_on_a_terminal(config: Path, events: Path, cwd: Path, *extra: str) -> str:
    """Run `route` with stderr on a pseudo-terminal; return what the terminal showed."""
    import pty
    import select

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "eventrouter", "route", str(config), str(events), *extra],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed: the process is done
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=60)
    os.close(leader)
    return shown.decode("utf-8", "replace")


def test_route_shows_a_progress_bar_on_a_terminal_for_files(good: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(event_line("video.played") + "\n" for _ in range(200)))
    assert "routing" in _route_on_a_terminal(good, events, tmp_path)
    assert "routing" not in _route_on_a_terminal(good, events, tmp_path, "--no-progress")
