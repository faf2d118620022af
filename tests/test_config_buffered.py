"""``buffered:`` on a YAML node; Segment and MongoDB nodes are buffered unless told not to."""

from __future__ import annotations

from pathlib import Path

import pytest
from buffered_helpers import WAIT

from eventrouter import MemoryBackend
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.mongodb import MongoBackend
from eventrouter.backends.segment import SegmentBackend
from eventrouter.config import load, read_config
from eventrouter.deadletter import read_dead_letters
from eventrouter.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def test_buffered_true_wraps_the_node_with_the_defaults(tmp_path: Path) -> None:
    tracker = load(write(tmp_path, "backends:\n  inbox: {class: memory, buffered: true}\n"))
    node = tracker.get_backend("inbox")
    assert isinstance(node, BufferedBackend)
    assert isinstance(node.backend, MemoryBackend)
    assert (node.max_queue, node.when_full) == (10_000, "dead_letter")
    tracker.emit("a")
    tracker.close(WAIT)
    assert node.backend.names() == ["a"]


def test_buffered_options_are_passed_and_the_tree_dead_letter_is_the_default(
    tmp_path: Path,
) -> None:
    config = write(
        tmp_path,
        f"dead_letter: {tmp_path / 'dead.jsonl'}\n"
        "backends:\n"
        "  inbox:\n"
        "    class: memory\n"
        "    buffered: {max_queue: 5, when_full: drop_newest, batch_size: 2}\n",
    )
    node = load(config).get_backend("inbox")
    assert isinstance(node, BufferedBackend)
    assert (node.max_queue, node.when_full, node.batch_size) == (5, "drop_newest", 2)
    assert node.dead_letter is not None
    assert node.dead_letter.path == tmp_path / "dead.jsonl"
    node.close(WAIT)


def test_a_node_without_the_key_is_not_buffered(tmp_path: Path) -> None:
    tracker = load(write(tmp_path, "backends:\n  inbox: {class: memory}\n"))
    assert isinstance(tracker.get_backend("inbox"), MemoryBackend)


def test_mongodb_and_segment_are_buffered_by_default(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "backends:\n"
        "  mongo: {class: mongodb, options: {uri: 'mongodb://127.0.0.1:1'}}\n"
        "  segment: {class: segment, options: {write_key: k, host: 'http://127.0.0.1:1'}}\n"
        "  plain: {class: mongodb, buffered: false, options: {uri: 'mongodb://127.0.0.1:1'}}\n",
    )
    tracker = load(config)
    mongo, segment = tracker.get_backend("mongo"), tracker.get_backend("segment")
    assert isinstance(mongo, BufferedBackend)
    assert isinstance(mongo.backend, MongoBackend)
    assert isinstance(segment, BufferedBackend)
    assert isinstance(segment.backend, SegmentBackend)
    assert isinstance(tracker.get_backend("plain"), MongoBackend)
    tracker.close(WAIT)


class SiteSegment(SegmentBackend):
    """A site's own Segment backend: it inherits being buffered."""


class SiteMongo(MongoBackend):
    """A site's own MongoDB backend, which opts out in code."""

    buffered_by_default = False


def test_a_subclass_inherits_being_buffered_by_default(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "backends:\n"
        f"  segment: {{class: {__name__}.SiteSegment, options: {{write_key: k}}}}\n"
        f"  mongo: {{class: {__name__}.SiteMongo, options: {{uri: 'mongodb://127.0.0.1:1'}}}}\n",
    )
    tracker = load(config)
    segment = tracker.get_backend("segment")
    assert isinstance(segment, BufferedBackend)
    assert isinstance(segment.backend, SiteSegment)
    assert isinstance(tracker.get_backend("mongo"), SiteMongo)
    tracker.close(WAIT)


def test_buffered_from_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path, "backends:\n  inbox: {class: memory, buffered: '${BUF:-false}'}\n")
    assert isinstance(load(config, env={}).get_backend("inbox"), MemoryBackend)
    node = load(config, env={"BUF": "true"}).get_backend("inbox")
    assert isinstance(node, BufferedBackend)
    node.close(WAIT)


def test_an_unknown_buffered_option_is_reported_at_its_line(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "backends:\n  inbox:\n    class: memory\n    buffered:\n      max_qeue: 5\n",
    )
    with pytest.raises(ConfigError) as caught:
        read_config(config)
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("backends.inbox.buffered.max_qeue", 5)
    assert "max_queue" in issue.message


def test_a_bad_buffered_value_is_reported_at_its_line(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "backends:\n  inbox:\n    class: memory\n    buffered:\n      max_queue: 5\n"
        "      when_full: wait\n",
    )
    with pytest.raises(ConfigError) as caught:
        read_config(config)
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("backends.inbox.buffered.when_full", 6)
    assert "drop_oldest" in issue.message


@pytest.mark.parametrize("value", ["[1]", "maybe"])
def test_buffered_must_be_a_flag_or_options(tmp_path: Path, value: str) -> None:
    config = write(tmp_path, f"backends:\n  inbox: {{class: memory, buffered: {value}}}\n")
    with pytest.raises(ConfigError, match="expected true, false or a mapping"):
        read_config(config)


def test_a_buffered_node_dead_letters_with_the_tree_file(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    config = write(
        tmp_path,
        f"dead_letter: {dead}\n"
        "backends:\n"
        "  down:\n"
        "    class: buffered_helpers.Refuses\n"
        "    buffered: {flush_interval: 0}\n",
    )
    tracker = load(config)
    tracker.emit("a")
    tracker.close(WAIT)
    [record] = list(read_dead_letters(dead))
    assert record["event"]["name"] == "a"
    assert record["error"] == "DeliveryError"


def test_the_tree_command_marks_buffered_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventrouter.cli import main

    config = write(
        tmp_path,
        "backends:\n  inbox: {class: memory, buffered: true}\n  plain: {class: memory}\n",
    )
    assert main(["tree", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("inbox" in line and "(buffered)" in line for line in lines)
    assert not any("plain" in line and "(buffered)" in line for line in lines)
