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
