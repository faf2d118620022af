"""SIGTERM stops ``eventrouter route`` like Ctrl-C: flush, summary, exit 128 + 15."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from buffered_helpers import WAIT

CONFIG = """\
backends:
  archive: {class: jsonlog, options: {path: out/archive.jsonl}}
"""


@pytest.mark.slow
def test_sigterm_during_route_flushes_prints_the_summary_and_exits_143(tmp_path: Path) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(CONFIG)
    process = subprocess.Popen(
        [sys.executable, "-m", "eventrouter", "route", str(config), "-"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps({"name": "a"}) + "\n" + json.dumps({"name": "b"}) + "\n")
    process.stdin.flush()
    archive = tmp_path / "out" / "archive.jsonl"
    deadline = time.monotonic() + WAIT
    while not (archive.exists() and len(archive.read_text().splitlines()) == 2):
        assert time.monotonic() < deadline, "the two events were never routed"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # stdin stays open: the loop waits for input
    stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 128 + signal.SIGTERM
    assert "interrupted after 2 lines" in stderr
    assert "Traceback" not in stderr
    assert "routed" in stdout
