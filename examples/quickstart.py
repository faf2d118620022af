"""Emit a few events through a two-level routing tree and print what each backend received."""

from __future__ import annotations

import json

from eventrouter import EventEmissionExit, MemoryBackend, RoutingBackend, Tracker
from eventrouter.typing import Event


def only_video(event: Event) -> None:
    if not event["name"].startswith("video."):
        raise EventEmissionExit


def hide_ip(event: Event) -> None:
    if "ip" in event["context"]:
        event["context"]["ip"] = "[REDACTED]"


def main() -> None:
    archive, analytics = MemoryBackend(), MemoryBackend()
    tracker = Tracker(
        backends={
            "archive": archive,
            "analytics": RoutingBackend({"sink": analytics}, [only_video, hide_ip]),
        }
    )
    with tracker.context("request", {"user_id": 42, "ip": "203.0.113.7"}):
        tracker.emit("video.played", {"video": "intro", "position": 12.5})
        tracker.emit("problem.checked", {"problem": "p1", "correct": True})
        tracker.emit("video.paused", {"video": "intro", "position": 30.0})
    for name, sink in (("archive", archive), ("analytics", analytics)):
        print(f"== {name}: {len(sink.events)} events")
        for event in sink.events:
            print(json.dumps({k: event[k] for k in ("name", "data", "context")}))
    print("== stats")
    print(json.dumps(tracker.stats(), indent=2))


if __name__ == "__main__":
    main()
