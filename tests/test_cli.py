"""Specification of the ``eventrouter`` command line.

Most tests call :func:`eventrouter.cli.main` in-process (its stdout, stderr, stdin, working
directory and environment replaced); a few run the real command as a subprocess where the
process itself is what is tested: signals, a terminal, the installed console script.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# imported with pymongo, before a test hides pymongo (the module remembers what it found)
import eventrouter.backends.mongodb  # noqa: F401
from eventrouter import __version__, cli
from eventrouter._cli import events
from eventrouter.config import load

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


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Result]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Run]:
    """Call ``main`` in-process in ``tmp_path`` (or ``cwd``), with ``stdin`` as its input
    and ``env`` added to an environment without the example's variables."""
    for name in list(os.environ):
        if name.startswith(("SEGMENT_", "MONGODB_", "EVENTROUTER_")):
            monkeypatch.delenv(name)
    modules = set(sys.modules)

    def call(
        *args: str, cwd: Path | None = None, stdin: str = "", env: dict[str, str] | None = None
    ) -> Result:
        monkeypatch.chdir(cwd or tmp_path)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    yield call
    for name in set(sys.modules) - modules:  # the modules a test wrote in its tmp_path
        if getattr(sys.modules[name], "__file__", None) and str(tmp_path) in str(
            sys.modules[name].__file__
        ):
            del sys.modules[name]


def run_process(
    *args: str, cwd: Path, stdin: str | None = None, command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(command or [sys.executable, "-m", "eventrouter"]), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=DEADLINE,
        check=False,
    )


def table(stdout: str) -> dict[str, list[str]]:
    """The rows of the summary tables: first cell -> the other cells."""
    return {
        cells[0]: cells[1:]
        for line in stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("│┃ ").split("│") if c.strip()])
    }


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


def event_line(name: str, **extra: object) -> str:
    return json.dumps({"name": name, "data": {"n": 1}, **extra})


def lines_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the command itself ---------------------------------------------------------------------


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"eventrouter {__version__}"


def test_no_command_prints_usage_and_exits_2(run: Run) -> None:
    result = run()
    assert result.returncode == 2
    assert "usage:" in result.stderr


@pytest.mark.parametrize("command", ["validate", "tree", "route", "replay", "worker"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: eventrouter {command}" in capsys.readouterr().out


def test_modules_in_the_current_directory_are_found(run: Run, tmp_path: Path) -> None:
    (tmp_path / "cwd_tracking.py").write_text("def tag(event):\n    return event\n")
    (tmp_path / "routing.yaml").write_text(
        "processors: [cwd_tracking.tag]\nbackends: {kept: memory}\n"
    )
    result = run("validate", "routing.yaml")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path) not in sys.path  # put back as it was


@pytest.mark.slow
def test_the_console_script_imports_from_the_current_directory(tmp_path: Path) -> None:
    """End to end: the installed `eventrouter` script, not `python -m`, finds ./module.py."""
    script = Path(sys.executable).parent / "eventrouter"
    if not script.exists():
        pytest.skip("the console script is not installed next to this Python")
    (tmp_path / "script_tracking.py").write_text("def tag(event):\n    return event\n")
    config = tmp_path / "routing.yaml"
    config.write_text("processors: [script_tracking.tag]\nbackends: {kept: memory}\n")
    result = run_process("route", str(config), cwd=tmp_path, command=[str(script)], stdin="")
    assert result.returncode == 0, result.stderr


# -- validate -------------------------------------------------------------------------------


def test_validate_valid_config_exits_0_with_one_line(run: Run, good: Path) -> None:
    result = run("validate", str(good))
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1
    assert "valid" in result.stdout
    assert "3 backends" in result.stdout
    assert result.stderr == ""


def test_validate_invalid_config_exits_2_with_every_error(run: Run, bad: Path) -> None:
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3 at backends.archive.class" in result.stderr
    assert f"{bad}:6 at backends.other.options.max_event" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_validate_missing_file_exits_2_without_traceback(run: Run) -> None:
    result = run("validate", "nope.yaml")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_names_the_extra_a_backend_needs(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymongo", None)  # what `import pymongo` meets uninstalled
    (tmp_path / "routing.yaml").write_text("backends:\n  store:\n    class: mongodb\n")
    result = run("validate", "routing.yaml")
    assert result.returncode == 2
    assert "routing.yaml:3 at backends.store.class" in result.stderr
    assert "pip install 'eventrouter[mongo]'" in result.stderr


def test_a_disabled_node_needs_no_extra(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymongo", None)
    (tmp_path / "routing.yaml").write_text(
        "backends:\n  store: {class: mongodb, enabled: false}\n  kept: memory\n"
    )
    assert run("validate", "routing.yaml").returncode == 0


def test_validate_reports_an_empty_secret_by_its_variable(run: Run, tmp_path: Path) -> None:
    (tmp_path / "routing.yaml").write_text(
        "backends:\n  segment:\n    class: segment\n"
        '    options: {write_key: "${SEGMENT_WRITE_KEY}"}\n'
    )
    result = run("validate", "routing.yaml", env={"SEGMENT_WRITE_KEY": ""})
    assert result.returncode == 2
    assert "routing.yaml:4 at backends.segment.options.write_key" in result.stderr
    assert "SEGMENT_WRITE_KEY is set but empty" in result.stderr
    assert run("validate", "routing.yaml", env={"SEGMENT_WRITE_KEY": "k3y"}).returncode == 0


def test_validate_reports_a_filter_with_nothing_to_filter(run: Run, tmp_path: Path) -> None:
    (tmp_path / "routing.yaml").write_text(
        "processors:\n  - name_filter\nbackends: {kept: memory}\n"
    )
    result = run("validate", "routing.yaml")
    assert result.returncode == 2
    assert "routing.yaml:2 at processors[0]" in result.stderr
    assert "filters nothing" in result.stderr


@pytest.mark.parametrize("where", ["enabled", "buffered"])
def test_a_boolean_from_the_environment_names_its_variable_and_the_accepted_words(
    run: Run, tmp_path: Path, where: str
) -> None:
    (tmp_path / "routing.yaml").write_text(
        f"backends:\n  kept:\n    class: memory\n    {where}: ${{SEGMENT_ENABLED:-false}}\n"
    )
    result = run("validate", "routing.yaml", env={"SEGMENT_ENABLED": "ture"})
    assert result.returncode == 2
    assert f"routing.yaml:4 at backends.kept.{where}" in result.stderr
    assert "the environment variable SEGMENT_ENABLED" in result.stderr
    assert "true/false, yes/no, on/off, 1/0" in result.stderr
    assert "ture" not in result.stderr  # a value from the environment is never shown


def test_a_boolean_option_from_the_environment_names_its_variable_and_the_accepted_words(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / "routing.yaml").write_text(
        "backends:\n  seg:\n    class: segment\n"
        '    options: {write_key: k3y, debug: "${SEGMENT_DEBUG}"}\n'
    )
    result = run("validate", "routing.yaml", env={"SEGMENT_DEBUG": "ture"})
    assert result.returncode == 2
    assert "routing.yaml:4 at backends.seg.options.debug" in result.stderr
    assert "from the environment variable SEGMENT_DEBUG" in result.stderr
    assert "(accepted: true/false, yes/no, on/off, 1/0)" in result.stderr
    assert "ture" not in result.stderr


def test_example_config_validates_with_no_environment(run: Run) -> None:
    result = run("validate", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stderr
    assert "disabled" in result.stdout


# -- hostile configurations -----------------------------------------------------------------


def test_a_5000_deep_yaml_is_one_line_with_its_position(run: Run, tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("backends:\n  a: " + "[" * 5000 + "]" * 5000 + "\n")
    result = run("validate", "deep.yaml")
    assert result.returncode == 2
    assert "deep.yaml:2: nested more than" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the count, then the problem


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a device"), ("fifo", "a FIFO"), (".", "a directory")]
)
def test_validate_refuses_what_is_not_a_regular_file_at_once(
    run: Run, tmp_path: Path, path: str, kind: str
) -> None:
    if path == "fifo":
        os.mkfifo(tmp_path / "fifo")  # opening it would block until someone writes
    result = run("validate", path)
    assert result.returncode == 2
    assert f"{path}: cannot read the configuration from {kind}" in result.stderr


def test_validate_refuses_a_huge_file(run: Run, tmp_path: Path) -> None:
    with (tmp_path / "huge.yaml").open("w") as handle:
        handle.write("backends: {kept: memory}\n")
        handle.writelines("#" * 1024 + "\n" for _ in range(9 * 1024))
    result = run("validate", "huge.yaml")
    assert result.returncode == 2
    assert "huge.yaml: the file is larger than 8 MiB" in result.stderr


# -- tree -----------------------------------------------------------------------------------


def test_tree_draws_nodes_masks_secrets_and_marks_disabled(run: Run, good: Path) -> None:
    result = run("tree", str(good))
    assert result.returncode == 0
    for text in ("archive: jsonlog", "analytics: router", "name_filter", "inbox: jsonlog"):
        assert text in result.stdout
    assert "write_key=***" in result.stdout
    assert "very-secret-key" not in result.stdout
    segment_line = next(line for line in result.stdout.splitlines() if "segment:" in line)
    assert "[disabled]" in segment_line


def test_tree_of_invalid_config_exits_2(run: Run, bad: Path) -> None:
    result = run("tree", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# -- route ----------------------------------------------------------------------------------


def test_route_skips_malformed_lines_reports_their_numbers_and_exits_1(
    run: Run, good: Path, tmp_path: Path
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
    result = run("route", str(good), str(events))
    assert result.returncode == 1
    assert f"{events}:2: skipped: not valid JSON" in result.stderr
    assert f"{events}:4: skipped: `name` is missing" in result.stderr
    assert f"{events}:7: skipped: `data` must be a JSON object" in result.stderr
    assert "Traceback" not in result.stderr
    archive = lines_of(tmp_path / "out" / "archive.jsonl")
    inbox = lines_of(tmp_path / "out" / "inbox.jsonl")
    assert [line["name"] for line in archive] == ["video.played", "problem.check", "video.paused"]
    assert [line["name"] for line in inbox] == ["video.played", "video.paused"]


def test_route_summary_counts_read_rejected_and_per_backend(run: Run, good: Path) -> None:
    stdin = "\n".join([event_line("video.played"), "oops", event_line("other.thing")]) + "\n"
    rows = table(run("route", str(good), "-", stdin=stdin).stdout)
    assert rows["read"] == ["3"]
    assert rows["rejected (malformed)"] == ["1"]
    assert rows["routed"] == ["2"]
    assert rows["processor errors (all routers)"] == ["0"]
    assert rows["archive"][:3] == ["jsonlog", "2", "0"]
    assert rows["analytics"][:3] == ["router", "2", "0"]
    assert rows["analytics.inbox"][:3] == ["jsonlog", "1", "0"]
    assert rows["analytics.segment"][-1] == "disabled"


def test_route_reads_standard_input_by_default(run: Run, good: Path, tmp_path: Path) -> None:
    result = run("route", str(good), stdin=event_line("video.played") + "\n")
    assert result.returncode == 0
    assert len(lines_of(tmp_path / "out" / "archive.jsonl")) == 1


def test_route_accepts_a_file_starting_with_a_utf8_bom(
    run: Run, good: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    first, second = event_line("video.played"), event_line("video.paused")
    events.write_bytes(b"\xef\xbb\xbf" + f"{first}\n{second}\n".encode())
    result = run("route", str(good), str(events))
    assert result.returncode == 0, result.stderr
    archive = lines_of(tmp_path / "out" / "archive.jsonl")
    assert [line["name"] for line in archive] == ["video.played", "video.paused"]


def test_route_skips_a_line_nested_too_deeply_instead_of_crashing(
    run: Run, good: Path, tmp_path: Path
) -> None:
    deep = '{"name": "deep", "data": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    stdin = "\n".join([event_line("video.played"), deep, event_line("video.paused")]) + "\n"
    result = run("route", str(good), "-", stdin=stdin)
    assert result.returncode == 1
    assert "<stdin>:2: skipped: nested too deeply to read" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines_of(tmp_path / "out" / "archive.jsonl")) == 2


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00"]
)
def test_an_out_of_range_timestamp_skips_its_line_only(
    run: Run, good: Path, tmp_path: Path, timestamp: str
) -> None:
    stdin = "\n".join(
        [event_line("video.played"), event_line("x", timestamp=timestamp), event_line("y")]
    )
    result = run("route", str(good), "-", stdin=stdin + "\n")
    if timestamp == "0001-01-01T00:00":  # naive, taken as UTC: in range
        assert result.returncode == 0, result.stderr
        assert len(lines_of(tmp_path / "out" / "archive.jsonl")) == 3
        return
    assert result.returncode == 1
    assert "<stdin>:2: skipped: `timestamp` is not a valid ISO 8601" in result.stderr
    assert "Traceback" not in result.stderr
    assert [e["name"] for e in lines_of(tmp_path / "out" / "archive.jsonl")] == [
        "video.played",
        "y",
    ]
    assert table(result.stdout)["routed"] == ["2"]


def test_a_line_longer_than_the_limit_is_skipped_and_the_rest_routed(
    run: Run, good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "MAX_LINE_BYTES", 100)
    long = event_line("long", padding="x" * 250)
    stdin = "\n".join([event_line("a"), long, event_line("b")]) + "\n"
    result = run("route", str(good), "-", stdin=stdin)
    assert result.returncode == 1
    assert f"<stdin>:2: skipped: longer than 100 bytes ({len(long) + 1} bytes)" in result.stderr
    assert [e["name"] for e in lines_of(tmp_path / "out" / "archive.jsonl")] == ["a", "b"]


def test_route_refuses_a_device_in_one_line(run: Run, good: Path) -> None:
    result = run("route", str(good), "/dev/zero")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "eventrouter: error: /dev/zero: is a device: give a JSON-lines file, or '-' to read "
        "standard input"
    )


def test_a_line_the_tree_cannot_take_is_skipped_and_the_rest_routed(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever goes wrong with one line (here: building its event) stops only that line."""
    from eventrouter import event as event_module

    real = event_module.build_event

    def fragile(name: str, *args: object, **kwargs: object) -> object:
        if name == "bad":
            raise OverflowError("data 7 quoted")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(event_module, "build_event", fragile)
    (tmp_path / "routing.yaml").write_text("backends: {kept: {class: jsonlog, options: {path: k}}}")
    stdin = "\n".join([event_line("a"), event_line("bad"), event_line("b")]) + "\n"
    result = run("route", "routing.yaml", "-", stdin=stdin)
    assert result.returncode == 1
    assert "<stdin>:2: skipped: cannot be read as an event (OverflowError)" in result.stderr
    assert "quoted" not in result.stderr
    assert [e["name"] for e in lines_of(tmp_path / "k")] == ["a", "b"]


FAILING_PROCESSOR = """\
def tag(event):
    if event["data"].get("n") == 2:
        raise KeyError(event["data"]["email"])
    return event
"""


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    (tmp_path / "failing_tracking.py").write_text(FAILING_PROCESSOR)
    config = tmp_path / "routing.yaml"
    config.write_text(
        "processors: [failing_tracking.tag]\n"
        "backends:\n  kept: memory\n"
        "  sub:\n    processors: [failing_tracking.tag]\n    backends: {inner: memory}\n"
    )
    return config


FAILING_EVENTS = "\n".join(
    json.dumps({"name": "user.login", "data": {"n": n, "email": "ada@example.com"}})
    for n in (1, 2, 2, 1)
)


def test_route_counts_processor_errors_and_exits_1(run: Run, failing: Path) -> None:
    result = run("route", str(failing), "-", stdin=FAILING_EVENTS)
    assert result.returncode == 1
    assert table(result.stdout)["processor errors (all routers)"] == ["4"]
    assert result.stderr.count("processor failing_tracking.tag failed") == 1
    assert "4 processor error(s)" in result.stderr
    assert "ada@example.com" not in result.stderr + result.stdout


@pytest.mark.parametrize(("flag", "shown"), [("-v", 1), ("--debug", 4)])
def test_verbose_shows_the_frames_of_the_first_failure_without_data(
    run: Run, failing: Path, tmp_path: Path, flag: str, shown: int
) -> None:
    """-v: the first failure of each processor; --debug: every one."""
    result = run(flag, "route", str(failing), "-", stdin=FAILING_EVENTS)
    assert result.returncode == 1
    frames = [line for line in result.stderr.splitlines() if "raised through" in line]
    assert len(frames) == shown
    assert f"{tmp_path / 'failing_tracking.py'}:3 in tag" in frames[0]
    assert "ada@example.com" not in result.stderr


FAILING_BACKEND = """\
class Refuses:
    def send(self, event):
        raise ConnectionError(event["data"]["email"])


class Broken:
    def send(self, event):
        raise ValueError("broken")
"""


@pytest.mark.parametrize(("flag", "shown"), [(None, 1), ("--debug", 5)])
def test_a_failing_backend_is_shown_once_per_error_type_and_counted_for_every_event(
    run: Run, tmp_path: Path, flag: str | None, shown: int
) -> None:
    (tmp_path / "failing_backends.py").write_text(FAILING_BACKEND)
    config = tmp_path / "routing.yaml"
    config.write_text(
        "backends:\n  down: {class: failing_backends.Refuses}\n"
        "  broken: {class: failing_backends.Broken}\n  kept: memory\n"
    )
    stdin = "\n".join(
        json.dumps({"name": "a", "data": {"email": "ada@example.com"}}) for _ in range(5)
    )
    result = run(*([flag] if flag else []), "route", str(config), "-", stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.count("backend 'down' failed") == shown
    assert result.stderr.count("backend 'broken' failed") == shown
    rows = table(result.stdout)
    assert rows["down"][1:3] == ["0", "5"]  # delivered, failed
    assert rows["broken"][1:3] == ["0", "5"]
    assert "ada@example.com" not in result.stderr


def test_route_counts_what_an_asynchronous_backend_gives_up_on_and_exits_1(
    run: Run, tmp_path: Path
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
    result = run("route", str(config), "-", stdin=stdin)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = table(result.stdout)
    assert rows["later"][1:3] == ["0", "3"]  # delivered, failed
    assert rows["kept"][1:3] == ["3", "0"]


# -- what the logs never show ---------------------------------------------------------------


LEAKY_BACKEND = """\
from eventrouter.errors import DeliveryError


class Leaky:
    def __init__(self, database):
        self.database = database

    def send(self, event):
        raise DeliveryError(f"cannot write to {self.database}", retryable=False)
"""


def test_values_from_the_environment_never_appear_in_log_lines(run: Run, tmp_path: Path) -> None:
    (tmp_path / "leaky_backend.py").write_text(LEAKY_BACKEND)
    (tmp_path / "routing.yaml").write_text(
        'backends:\n  store: {class: leaky_backend.Leaky, options: {database: "${DB_NAME}"}}\n'
    )
    result = run("route", "routing.yaml", "-", stdin=event_line("a"), env={"DB_NAME": "acme-prod"})
    assert "backend 'store' failed" in result.stderr
    assert "cannot write to ***" in result.stderr
    assert "acme-prod" not in result.stderr + result.stdout


def test_third_party_loggers_are_kept_at_info_unless_the_user_set_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    segment, pymongo = logging.getLogger("segment"), logging.getLogger("pymongo")
    monkeypatch.setattr(segment, "level", logging.NOTSET)
    monkeypatch.setattr(pymongo, "level", logging.DEBUG)  # the user's opt-in
    load({"backends": {"kept": "memory"}}).close()
    assert segment.level == logging.INFO
    assert pymongo.level == logging.DEBUG


@pytest.mark.parametrize("backend", ["segment", "mongodb"])
def test_constructing_a_backend_in_code_quiets_the_loggers_too(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    from eventrouter.backends.mongodb import MongoBackend
    from eventrouter.backends.segment import SegmentBackend

    segment, urllib3 = logging.getLogger("segment"), logging.getLogger("urllib3")
    monkeypatch.setattr(segment, "level", logging.NOTSET)
    monkeypatch.setattr(urllib3, "level", logging.WARNING)  # the application's own choice
    if backend == "segment":
        SegmentBackend(write_key="k3y").close()
    else:
        MongoBackend(uri="mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=100).close()
    assert segment.level == logging.INFO
    assert urllib3.level == logging.WARNING


# -- end to end: the real process -----------------------------------------------------------


@pytest.mark.slow
def test_example_events_route_through_the_example_config(tmp_path: Path) -> None:
    result = run_process("route", str(EXAMPLE_CONFIG), str(EXAMPLE_EVENTS), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    total = len(EXAMPLE_EVENTS.read_text().splitlines())
    archive = (tmp_path / "out" / "archive.jsonl").read_text().splitlines()
    analytics = lines_of(tmp_path / "out" / "analytics.jsonl")
    assert len(archive) == total
    assert 0 < len(analytics) < total
    assert all(event["context"]["ip"] == "[REDACTED]" for event in analytics)  # type: ignore[index]
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


AS_FROM_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('eventrouter', run_name='__main__', alter_sys=True)"
)
"""``python -m eventrouter`` with Ctrl-C's usual handler: a suite run in the background
(``cmd &``, nohup) ignores SIGINT, and a command started from it would too."""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT and SIGTERM are POSIX")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_flushes_prints_the_summary_and_exits_128_plus_it(
    good: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, "route", str(good), "-"],
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
    process.send_signal(signum)  # stdin stays open: the loop is waiting for input
    assert process.wait(timeout=DEADLINE) == 128 + signum  # 130 for SIGINT, 143 for SIGTERM
    stdout, stderr = process.communicate(timeout=DEADLINE)
    assert "interrupted after 2 lines" in stderr
    assert "Traceback" not in stderr
    assert "routed" in stdout


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


@pytest.mark.slow
def test_route_shows_a_progress_bar_on_a_terminal_for_files(good: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(event_line("video.played") + "\n" for _ in range(200)))
    assert "routing" in _route_on_a_terminal(good, events, tmp_path)
    assert "routing" not in _route_on_a_terminal(good, events, tmp_path, "--no-progress")


@pytest.mark.slow
def test_a_mongodb_failure_names_the_node_not_its_database(
    caplog: pytest.LogCaptureFixture, unused_port: int
) -> None:
    """The database name may come from the environment: the ERROR line gives the path."""
    tracker = load(
        {
            "backends": {
                "store": {
                    "class": "mongodb",
                    "buffered": False,
                    "options": {
                        "uri": f"mongodb://127.0.0.1:{unused_port}",
                        "database": "${DB_NAME}",
                        "timeout": 0.2,
                    },
                }
            }
        },
        env={"DB_NAME": "acme-prod-db"},
    )
    with caplog.at_level(logging.ERROR, logger="eventrouter"):
        tracker.emit("a", {"n": 1})
        tracker.close()
    assert "backend 'store' failed" in caplog.text
    assert "acme-prod-db" not in caplog.text
