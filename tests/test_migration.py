"""Specification of loading openedx event-tracking settings unchanged."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventrouter.backends.logger import LoggerBackend
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.config import load, read_config
from eventrouter.errors import ConfigError, EventEmissionExit

# The shape of event-tracking's documented settings (its README's AsyncRoutingBackend
# example, with the `...` placeholders and the dummy engine filled in) and edx-platform's
# default `tracking_logs` / `segmentio` branches, which users copy.
TRACK_MAX_EVENT = 50000
EVENT_TRACKING_BACKENDS: dict[str, Any] = {
    "caliper": {
        "ENGINE": "eventtracking.backends.async_routing.AsyncRoutingBackend",
        "OPTIONS": {
            "backend_name": "caliper",
            "processors": [
                {
                    "ENGINE": "eventtracking.processors.regex_filter.RegexFilter",
                    "OPTIONS": {
                        "filter_type": "allowlist",
                        "regular_expressions": [
                            "edx.course.enrollment.activated",
                            "edx.course.enrollment.deactivated",
                        ],
                    },
                }
            ],
            "backends": {
                "caliper": {
                    "ENGINE": "eventrouter.backends.memory.MemoryBackend",
                    "OPTIONS": {},
                }
            },
        },
    },
    "tracking_logs": {
        "ENGINE": "eventtracking.backends.routing.RoutingBackend",
        "OPTIONS": {
            "backends": {
                "logger": {
                    "ENGINE": "eventtracking.backends.logger.LoggerBackend",
                    "OPTIONS": {"name": "tracking", "max_event_size": TRACK_MAX_EVENT},
                }
            },
            "processors": [{"ENGINE": "myapp_shim.PrefixedEventProcessor"}],
        },
    },
    "segmentio": {
        "ENGINE": "eventtracking.backends.routing.RoutingBackend",
        "OPTIONS": {
            "backends": {"segment": {"ENGINE": "eventtracking.backends.segment.SegmentBackend"}},
            "processors": [
                {
                    "ENGINE": "eventtracking.processors.whitelist.NameWhitelistProcessor",
                    "OPTIONS": {"whitelist": []},
                }
            ],
        },
    },
}


SHIM_MODULE = """
class PrefixedEventProcessor:
    def __call__(self, event):
        event["data"] = {"prefixed": True, **event["data"]}
        return event
"""


@pytest.fixture(autouse=True)
def user_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A user's own processor module, as edx-platform's track.shim, importable by path."""
    (tmp_path / "myapp_shim.py").write_text(SHIM_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("myapp_shim", None)


def test_documented_settings_load_unchanged() -> None:
    tracker = load(EVENT_TRACKING_BACKENDS)
    assert sorted(tracker.backends) == ["caliper", "segmentio", "tracking_logs"]
    tracker.close()


def test_routing_backends_become_routers_with_their_children() -> None:
    tracker = load(EVENT_TRACKING_BACKENDS)
    caliper = tracker.get_backend("caliper")
    assert isinstance(caliper, RoutingBackend)
    assert isinstance(caliper.backends["caliper"], MemoryBackend)
    tracker.close()


def test_regex_filter_allowlist_keeps_re_match_semantics() -> None:
    tracker = load(EVENT_TRACKING_BACKENDS)
    for name in (
        "edx.course.enrollment.activated",
        "edx.course.enrollment.activated.v2",
        "edx.video.played",
    ):
        tracker.emit(name, {})
    inbox = tracker.get_backend("caliper").backends["caliper"]
    # re.match is anchored at the start only, so a longer name still matched in event-tracking
    assert [e["name"] for e in inbox.events] == [
        "edx.course.enrollment.activated",
        "edx.course.enrollment.activated.v2",
    ]
    tracker.close()


def test_regex_filter_blocklist_becomes_block_patterns() -> None:
    tree = read_config(
        {
            "EVENT_TRACKING_BACKENDS": {
                "m": {
                    "ENGINE": "eventtracking.backends.routing.RoutingBackend",
                    "OPTIONS": {
                        "backends": {
                            "mem": {"ENGINE": "eventrouter.backends.memory.MemoryBackend"}
                        },
                        "processors": [
                            {
                                "ENGINE": "eventtracking.processors.regex_filter.RegexFilter",
                                "OPTIONS": {
                                    "filter_type": "blocklist",
                                    "regular_expressions": ["heartbeat"],
                                },
                            }
                        ],
                    },
                }
            }
        }
    )
    assert tree.backends["m"].processors[0].options == {"block": ["re:(?:heartbeat)(?s:.*)"]}


def test_logger_name_option_becomes_logger_name() -> None:
    tracker = load(EVENT_TRACKING_BACKENDS)
    logger_backend = tracker.get_backend("tracking_logs").backends["logger"]
    assert isinstance(logger_backend, LoggerBackend)
    assert logger_backend.max_event_size == TRACK_MAX_EVENT
    tree = read_config(EVENT_TRACKING_BACKENDS)
    options = tree.backends["tracking_logs"].backends["logger"].options
    assert options["logger_name"] == "tracking"
    assert options["max_event_size"] == TRACK_MAX_EVENT
    tracker.close()


def test_logger_backend_logs_to_the_named_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tracking")
    tracker = load(EVENT_TRACKING_BACKENDS)
    tracker.emit("edx.video.played", {"id": "v1"})
    records = [r for r in caplog.records if r.name == "tracking"]
    assert len(records) == 1
    tracker.close()


def test_users_own_processor_is_imported_by_its_dotted_path() -> None:
    tracker = load(EVENT_TRACKING_BACKENDS)
    processor = tracker.get_backend("tracking_logs").processors[0]
    assert type(processor).__module__ == "myapp_shim"
    assert processor({"data": {"a": 1}})["data"] == {"prefixed": True, "a": 1}
    tracker.close()


def test_empty_whitelist_vetoes_everything_as_before() -> None:
    tree = read_config(EVENT_TRACKING_BACKENDS)
    segmentio = tree.backends["segmentio"]
    assert segmentio.processors[0].class_name == "name_filter"
    assert segmentio.processors[0].options == {"allow": []}


def test_segment_without_a_write_key_stays_enabled_and_reads_analytics_at_first_use() -> None:
    tree = read_config(EVENT_TRACKING_BACKENDS)
    segment = tree.backends["segmentio"].backends["segment"]
    assert segment.enabled
    assert "write_key" not in segment.options


def test_mongo_options_become_a_uri_database_and_collection() -> None:
    tree = read_config(
        {
            "mongo": {
                "ENGINE": "eventtracking.backends.mongodb.MongoBackend",
                "OPTIONS": {
                    "host": "db.example.org",
                    "port": 27018,
                    "user": "app",
                    "password": "p@ss",
                    "collection": "tracking",
                    "extra": {"w": 1, "tz_aware": True},
                },
            }
        }
    )
    node = tree.backends["mongo"]
    assert node.class_name == "mongodb"
    assert {k: v for k, v in node.options.items() if k != "indexes"} == {
        "uri": "mongodb://app:p%40ss@db.example.org:27018",
        "database": "eventtracking",
        "collection": "tracking",
        "write_concern": {"w": 1},
        "tz_aware": True,
    }
    assert node.shown_options()["uri"] == "mongodb://app:***@db.example.org:27018"


def test_settings_module_style_mapping_with_processors_is_accepted() -> None:
    tracker = load(
        {
            "EVENT_TRACKING_BACKENDS": {
                "mem": {"ENGINE": "eventrouter.backends.memory.MemoryBackend"}
            },
            "EVENT_TRACKING_PROCESSORS": [
                {
                    "ENGINE": "eventtracking.processors.whitelist.NameWhitelistProcessor",
                    "OPTIONS": {"whitelist": ["keep.me"]},
                }
            ],
        }
    )
    tracker.emit("keep.me", {})
    tracker.emit("drop.me", {})
    assert [e["name"] for e in tracker.get_backend("mem").events] == ["keep.me"]


def test_unknown_engine_that_does_not_import_is_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"x": {"ENGINE": "dummy.backend.engine"}})
    assert "no module named 'dummy'" in str(caught.value)


def test_unknown_option_of_a_known_engine_is_reported_with_its_settings_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "r": {
                    "ENGINE": "eventtracking.backends.routing.RoutingBackend",
                    "OPTIONS": {"backnds": {}},
                }
            }
        )
    assert caught.value.issues[0].path == "r.OPTIONS.backnds"


def test_yaml_file_with_engine_settings_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "default:\n  ENGINE: eventrouter.backends.memory.MemoryBackend\n", encoding="utf-8"
    )
    assert read_config(path).migrated
    assert list(load(path).backends) == ["default"]


def test_a_logger_without_a_name_logs_to_the_root_logger_as_event_tracking_did() -> None:
    tree = read_config(
        {"default": {"ENGINE": "eventtracking.backends.logger.LoggerBackend", "OPTIONS": {}}}
    )
    options = tree.backends["default"].options
    assert options["logger_name"] == ""
    assert options["max_event_size"] == 1024  # event-tracking's default when omitted


def _mongo_uri(options: dict[str, Any]) -> str:
    tree = read_config(
        {"m": {"ENGINE": "eventtracking.backends.mongodb.MongoBackend", "OPTIONS": options}}
    )
    uri = tree.backends["m"].options["uri"]
    assert isinstance(uri, str)
    return uri


def test_mongo_credentials_go_into_a_host_uri_without_userinfo() -> None:
    uri = _mongo_uri(
        {"host": "mongodb://db1,db2/?replicaSet=rs0", "user": "track", "password": "p@ss/w"}
    )
    assert uri == "mongodb://track:p%40ss%2Fw@db1,db2/?replicaSet=rs0"


def test_mongo_host_uri_with_userinfo_keeps_its_own() -> None:
    uri = _mongo_uri({"host": "mongodb://me:pw@db/", "user": "track", "password": "other"})
    assert uri == "mongodb://me:pw@db/"


def test_mongo_host_list_becomes_a_seed_list_with_the_port() -> None:
    assert _mongo_uri({"host": ["db1", "db2:27018"], "port": 27019}) == (
        "mongodb://db1:27019,db2:27018"
    )


def _translated_allow(engine: str, options: dict[str, Any]) -> Any:
    """The ``allow`` list an event-tracking processor setting is translated to."""
    tree = read_config(
        {
            "EVENT_TRACKING_BACKENDS": {
                "l": {"ENGINE": "eventrouter.backends.memory.MemoryBackend"}
            },
            "EVENT_TRACKING_PROCESSORS": [{"ENGINE": engine, "OPTIONS": options}],
        }
    )
    return tree.processors[0].options["allow"]


def _regex_filter_patterns(expressions: list[str]) -> Any:
    return _translated_allow(
        "eventtracking.processors.regex_filter.RegexFilter", {"regular_expressions": expressions}
    )


def test_regex_filter_leading_inline_flags_stay_at_the_start() -> None:
    assert _regex_filter_patterns([r"(?i)edx\.bi"]) == [r"re:(?i)(?:edx\.bi)(?s:.*)"]


def test_regex_filter_with_inline_flags_matches_as_re_match_did() -> None:
    from eventrouter.patterns import PatternSet

    patterns = PatternSet(_regex_filter_patterns([r"(?i)edx\.bi"]))
    assert patterns.matches("EDX.BI.event")
    assert not patterns.matches("x.edx.bi")


def _whitelist(names: list[str]) -> Any:
    return _translated_allow(
        "eventtracking.processors.whitelist.NameWhitelistProcessor", {"whitelist": names}
    )


def test_whitelist_plain_names_stay_plain() -> None:
    assert _whitelist(["edx.video.played", "a#b"]) == ["edx.video.played", "a#b"]


@pytest.mark.parametrize("name", ["re:x", "a.*", "#", "a.#.b"])
def test_whitelist_names_with_pattern_syntax_match_only_themselves(name: str) -> None:
    from eventrouter.patterns import PatternSet

    patterns = PatternSet(_whitelist([name]))
    assert patterns.matches(name)
    assert not patterns.matches("a.b")
    assert not patterns.matches("x")


# --- errors in event-tracking settings read from a file name the settings and the line ---------

MISTAKEN_SETTINGS = """\
EVENT_TRACKING_BACKENDS:
  tracking_logs:
    ENGINE: eventtracking.backends.routing.RoutingBackend
    OPTIONS:
      backends:
        logger:
          ENGINE: eventtracking.backends.logger.LoggerBackend
          OPTIONS:
            name: tracking
            max_event_size: lots
        archive:
          ENGINE: eventrouter.backends.memory.MemoryBakend
        memory:
          ENGINE: eventrouter.backends.memory.MemoryBackend
          OPTIONS:
            colour: red
  segmentio:
    ENGINE: eventtracking.backends.routing.RoutingBackend
    OPTIONS:
      processors:
        - ENGINE: eventtracking.processors.regex_filter.RegexFilter
          OPTIONS:
            regular_expressions:
              - "(unclosed"
              - "edx.bi"
      backends:
        sink:
          ENGINE: eventrouter.backends.memory.MemoryBackend
"""
ROUTER = "EVENT_TRACKING_BACKENDS.tracking_logs.OPTIONS.backends"


@pytest.fixture
def mistaken_settings_issues(tmp_path: Path) -> dict[str, tuple[int | None, str]]:
    path = tmp_path / "settings.yaml"
    path.write_text(MISTAKEN_SETTINGS, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert all(issue.file == str(path) for issue in caught.value.issues)
    return {issue.path: (issue.line, issue.message) for issue in caught.value.issues}


@pytest.mark.parametrize(
    ("path", "line", "words"),
    [
        (f"{ROUTER}.logger.OPTIONS.max_event_size", 10, "expected an integer"),
        (f"{ROUTER}.archive.ENGINE", 12, "MemoryBakend"),
        (f"{ROUTER}.memory.OPTIONS.colour", 16, "has no option 'colour'"),
        (
            "EVENT_TRACKING_BACKENDS.segmentio.OPTIONS.processors[0].OPTIONS"
            ".regular_expressions[0]",
            24,
            "not a valid regular expression",
        ),
    ],
    ids=["wrong-type", "unimportable-engine", "unknown-option", "processor-refusal"],
)
def test_errors_in_settings_from_a_yaml_file_name_the_settings_path_and_line(
    mistaken_settings_issues: dict[str, tuple[int | None, str]], path: str, line: int, words: str
) -> None:
    assert path in mistaken_settings_issues, sorted(mistaken_settings_issues)
    found_line, message = mistaken_settings_issues[path]
    assert found_line == line
    assert words in message


def test_settings_from_a_yaml_file_report_exactly_their_mistakes(
    mistaken_settings_issues: dict[str, tuple[int | None, str]],
) -> None:
    assert len(mistaken_settings_issues) == 4


def test_option_refused_by_the_translation_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "f:\n  ENGINE: eventtracking.backends.routing.RoutingBackend\n  OPTIONS:\n"
        "    backends: {}\n    nmae: x\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("f.OPTIONS.nmae", 5)


def test_errors_in_settings_given_as_a_dict_name_the_settings_path_without_a_line() -> None:
    with pytest.raises(ConfigError) as caught:
        read_config(
            {
                "log": {
                    "ENGINE": "eventtracking.backends.logger.LoggerBackend",
                    "OPTIONS": {"name": 3},
                }
            }
        )
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("log.OPTIONS.name", None)


# --- one call for a settings object, whitelists, logger and MongoDB rows ------------------------

WHITELIST = "eventtracking.processors.whitelist.NameWhitelistProcessor"


class _Settings:
    """What ``django.conf.settings`` looks like to ``load_settings``: attributes."""

    EVENT_TRACKING_BACKENDS: Any = {"mem": {"ENGINE": "eventrouter.backends.memory.MemoryBackend"}}
    EVENT_TRACKING_PROCESSORS: Any = [
        {"ENGINE": WHITELIST, "OPTIONS": {"whitelist": frozenset({"keep.me"})}}
    ]


def test_load_settings_reads_backends_and_processors_from_a_settings_object() -> None:
    import eventrouter

    tracker = eventrouter.load_settings(_Settings())
    tracker.emit("keep.me", {})
    tracker.emit("drop.me", {})
    assert [e["name"] for e in tracker.get_backend("mem").events] == ["keep.me"]


def test_load_settings_reads_a_settings_module(tmp_path: Path) -> None:
    from eventrouter import load_settings

    (tmp_path / "mysite_settings.py").write_text(
        "EVENT_TRACKING_BACKENDS = "
        "{'mem': {'ENGINE': 'eventrouter.backends.memory.MemoryBackend'}}\n"
        f"EVENT_TRACKING_PROCESSORS = [{{'ENGINE': {WHITELIST!r}, "
        "'OPTIONS': {'whitelist': ['keep.me']}}]\n",
        encoding="utf-8",
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import mysite_settings  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mysite_settings", None)
    tracker = load_settings(mysite_settings)
    assert len(tracker.processors) == 1
    tracker.emit("drop.me", {})
    assert tracker.get_backend("mem").events == []


def test_load_settings_without_the_settings_builds_an_empty_tracker_as_event_tracking_did() -> None:
    from eventrouter import load_settings

    assert dict(load_settings(object()).backends) == {}


@pytest.mark.parametrize(
    "whitelist",
    [
        frozenset({"keep.me"}),
        {"keep.me": "ignored"},
        {"keep.me": 1}.keys(),
        ("keep.me",),
        iter(["keep.me"]),
    ],
    ids=["frozenset", "dict", "dict-keys", "tuple", "iterator"],
)
def test_whitelist_accepts_any_iterable_of_names(whitelist: Any) -> None:
    from eventrouter.config.migrate import build_engine

    processor = build_engine(WHITELIST, {"whitelist": whitelist})
    event = {"name": "keep.me", "data": {}}
    assert processor(event) in (None, event)
    with pytest.raises(EventEmissionExit):
        processor({"name": "drop.me", "data": {}})


@pytest.mark.parametrize("whitelist", [None, "keep.me", 10], ids=["none", "bare-string", "int"])
def test_whitelist_refuses_what_event_tracking_refused_with_its_exception_type(
    whitelist: Any,
) -> None:
    from eventrouter.config.migrate import build_engine

    with pytest.raises(TypeError, match="must be passed a collection of allowed names"):
        build_engine(WHITELIST, {"whitelist": whitelist})


def test_whitelist_none_in_settings_is_a_config_error_and_a_type_error_at_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "EVENT_TRACKING_BACKENDS": {},
                "EVENT_TRACKING_PROCESSORS": [
                    {"ENGINE": WHITELIST, "OPTIONS": {"whitelist": None}}
                ],
            }
        )
    assert isinstance(caught.value, TypeError)  # event-tracking's exception type
    [issue] = caught.value.issues
    assert issue.path == "EVENT_TRACKING_PROCESSORS[0].OPTIONS.whitelist"


def test_regex_filter_refusals_raise_event_trackings_improperly_configured() -> None:
    from eventtracking.exceptions import ImproperlyConfigured

    from eventrouter.config.migrate import build_engine

    engine = "eventtracking.processors.regex_filter.RegexFilter"
    with pytest.raises(ImproperlyConfigured):
        build_engine(engine, {"filter_type": "INVALID", "regular_expressions": []})
    with pytest.raises(ImproperlyConfigured):
        build_engine(engine, {"regular_expressions": ["***"]})


def test_router_refuses_a_backend_without_send_with_event_trackings_message() -> None:
    from eventrouter.config.migrate import build_engine

    with pytest.raises(ValueError, match='Backend str does not have a callable "send" method'):
        build_engine("eventtracking.backends.routing.RoutingBackend", {"backends": {"a": "b"}})


def _logger_options(options: dict[str, Any]) -> dict[str, Any]:
    tree = read_config(
        {"log": {"ENGINE": "eventtracking.backends.logger.LoggerBackend", "OPTIONS": options}}
    )
    return dict(tree.backends["log"].options)


def test_logger_keeps_an_explicit_max_event_size_and_none_for_no_limit() -> None:
    assert _logger_options({"max_event_size": 50000})["max_event_size"] == 50000
    assert _logger_options({"max_event_size": None})["max_event_size"] is None


def test_logger_drops_oversized_events_and_writes_event_trackings_line_format() -> None:
    options = _logger_options({"name": "tracking"})
    assert options["oversize"] == "drop"
    assert options["line_format"] == "event-tracking"


def test_mongo_creates_event_trackings_indexes() -> None:
    tree = read_config({"m": {"ENGINE": "eventtracking.backends.mongodb.MongoBackend"}})
    assert tree.backends["m"].options["indexes"] == "event-tracking"


# --- any ENGINE class is built with the children it takes --------------------------------------

EVENTS_ROUTER_MODULE = """
class EventsRouter:
    # event-routing-backends' signature: processors, no backends
    def __init__(self, processors=None, backend_name=None):
        self.processors = processors or []
        self.backend_name = backend_name
        self.sent = []

    def send(self, event):
        for processor in self.processors:
            event = processor(event)
        self.sent.append(event)


class Tag:
    def __init__(self, label):
        self.label = label

    def __call__(self, event):
        return {**event, "tag": self.label}
"""


@pytest.fixture
def events_router_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "erb_like.py").write_text(EVENTS_ROUTER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "erb_like"
    sys.modules.pop("erb_like", None)


def test_a_class_taking_processors_but_no_backends_gets_its_processors_built(
    events_router_module: str,
) -> None:
    tracker = load(
        {
            "xapi": {
                "ENGINE": f"{events_router_module}.EventsRouter",
                "OPTIONS": {
                    "processors": [
                        {"ENGINE": f"{events_router_module}.Tag", "OPTIONS": {"label": "x"}}
                    ],
                    "backend_name": "xapi",
                },
            }
        }
    )
    router = tracker.get_backend("xapi")
    assert type(router).__name__ == "EventsRouter"
    assert router.backend_name == "xapi"
    tracker.emit("a.b", {})
    assert [e["tag"] for e in router.sent] == ["x"]


def test_an_unknown_option_of_a_users_router_names_its_settings_path(
    events_router_module: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "xapi": {
                    "ENGINE": f"{events_router_module}.EventsRouter",
                    "OPTIONS": {
                        "processors": [{"ENGINE": f"{events_router_module}.Tag", "OPTIONS": {}}],
                    },
                }
            }
        )
    [issue] = caught.value.issues
    assert issue.path.startswith("xapi.OPTIONS.processors[0]")


# --- docs/migration.md -------------------------------------------------------------------------

MIGRATION_DOC = Path(__file__).parent.parent / "docs" / "migration.md"


def test_the_migration_guide_lists_every_translated_class() -> None:
    from eventrouter.config.migrate import ROWS

    text = MIGRATION_DOC.read_text(encoding="utf-8")
    for engine, row in ROWS.items():
        assert f"| `{engine}` | `{row.target}` |" in text, engine


class UsersRouter:
    """A site's own router, as event-routing-backends' EventsRouter: processors, no backends."""

    def __init__(self, processors: list[Any] | None = None, backend_name: str = "") -> None:
        self.processors = processors or []
        self.backend_name = backend_name

    def send(self, event: dict[str, Any]) -> None:
        pass


def test_tree_shows_a_users_router_by_its_own_class_and_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventrouter import cli

    settings = tmp_path / "settings.yaml"
    settings.write_text(
        "EVENT_TRACKING_BACKENDS:\n"
        "  erb:\n"
        "    ENGINE: test_migration.UsersRouter\n"
        "    OPTIONS:\n"
        "      backend_name: erb\n"
        "      processors:\n"
        "        - ENGINE: eventtracking.processors.whitelist.NameWhitelistProcessor\n"
        "          OPTIONS: {whitelist: [edx.a]}\n"
    )
    assert cli.main(["tree", str(settings)]) == 0
    shown = capsys.readouterr().out
    assert "erb: test_migration.UsersRouter (router)" in shown
    assert "backend_name=erb" in shown
    assert "Engine" not in shown
