"""``eventrouter route|worker --metrics-port N`` serve the tree's metrics while they run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families
from test_worker import (  # the worker fixtures and helpers, on the real Redis
    RUN,
    Worker,
    celery_node,
    emit,
    redis_url,  # noqa: F401 - a fixture
    sink,
    wait_until,
    write_config,
)

WAIT = 90.0
"""Seconds a test waits for a process; a bound for a broken build, never a target."""


def scrape(port: int) -> dict[tuple[str, str], float]:
    """``eventrouter_events_total`` by (node, outcome); empty while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    return {
        (sample.labels["node"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "eventrouter_events_total"
    }


def reaches(port: int, key: tuple[str, str], count: int) -> Callable[[], bool]:
    return lambda: scrape(port).get(key) == count


@pytest.mark.slow
def test_route_serves_the_counts_of_the_events_it_routes(tmp_path: Path) -> None:
    config = tmp_path / "tree.yaml"
    config.write_text(json.dumps({"backends": {"keep": {"class": "memory"}}}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    route = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventrouter",
            "route",
            str(config),
            "-",
            "--no-progress",
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert route.stdin is not None
    try:
        for n in range(7):
            route.stdin.write(json.dumps({"name": "video.play", "data": {"n": n}}).encode())
            route.stdin.write(b"\n")
        route.stdin.flush()
        wait_until(reaches(port, ("keep", "delivered"), 7), "7 delivered events in /metrics")
        assert scrape(port)[("(root)", "emitted")] == 7
    finally:
        route.stdin.close()
        route.wait(WAIT)
    assert route.returncode == 0


@pytest.mark.slow
def test_worker_serves_the_sum_of_its_prefork_processes(
    redis_url: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    out = tmp_path / "delivered.jsonl"
    queue = f"{RUN}-metrics"
    node = celery_node(redis_url, queue, "metrics.*", {"file": sink(out)})
    config = write_config(tmp_path / "tree.json", {"remote": node}, tmp_path / "dead.jsonl")
    port = free_port()
    worker = Worker(
        config, tmp_path / "worker", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"
    )
    try:
        emit(config, [f"metrics.{n}" for n in range(5)])
        wait_until(
            reaches(port, ("remote", "task_delivered"), 5),
            "5 delivered events in the worker's /metrics",
            worker,
        )
    finally:
        worker.stop()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["route", "worker"])
def test_metrics_options_are_documented_in_help(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventrouter", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT,
    )
    assert "--metrics-port" in done.stdout


def _route(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "tree.yaml"
    config.write_text(json.dumps({"backends": {"keep": {"class": "memory"}}}))
    events = tmp_path / "events.jsonl"
    events.write_text('{"name": "x", "data": {}}\n')
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "eventrouter", "route", str(config), str(events), *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
        check=False,
    )


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_a_metrics_port_out_of_range_is_refused_before_anything_runs(
    tmp_path: Path, port: str
) -> None:
    done = _route(tmp_path, "--metrics-port", port)
    assert done.returncode == 2
    assert "--metrics-port" in done.stderr
    assert "1 to 65535" in done.stderr


def test_a_taken_metrics_port_is_named_as_the_metrics_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _route(tmp_path, "--metrics-port", str(taken.getsockname()[1]))
    assert done.returncode != 0
    assert "metrics port" in done.stderr


def test_the_metrics_folder_made_for_a_worker_is_removed_at_exit() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    script = (
        "import os, sys\n"
        "from eventrouter.metrics import use_multiprocess_dir\n"
        "folder = use_multiprocess_dir()\n"
        "if os.fork() == 0:\n"
        "    sys.exit(0)\n"  # a forked child's exit (its at-exit hooks run) leaves it alone
        "os.wait()\n"
        "assert os.path.isdir(folder)\n"
        "print(folder)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not Path(done.stdout.strip()).exists()


def test_a_celery_child_that_ends_drops_its_live_gauges(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = (
        "import os\n"
        "from celery.signals import worker_process_shutdown\n"
        "from eventrouter.backends.buffered import BufferedBackend\n"
        "from eventrouter.backends.memory import MemoryBackend\n"
        "from eventrouter.metrics import prometheus\n"
        "from eventrouter.tracker import Tracker\n"
        "tracker = Tracker({'queue': BufferedBackend(MemoryBackend())})\n"
        "prometheus.register(tracker, interval=3600)\n"
        "prometheus.mark_celery_children_dead_at_exit()\n"
        "live = f'gauge_livesum_{os.getpid()}.db'\n"
        "assert live in os.listdir(os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
        "worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)\n"
        "assert live not in os.listdir(os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
        "tracker.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
