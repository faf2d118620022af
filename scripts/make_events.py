"""Write examples/events.jsonl: a few hundred realistic Open edX-style events.

Deterministic (a fixed seed and start time), so the committed file only changes when this
script does. Run: ``python scripts/make_events.py [OUTPUT]``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from pathlib import Path
from typing import Any

COUNT = 300
SEED = 20240501
START = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
COURSES = [
    "course-v1:DemoX+Py101+2024_T1",
    "course-v1:DemoX+Stats201+2024_T1",
    "course-v1:OpenU+Hist110+2024_Spring",
]
USERS = [
    (1001, "ada", "ada@example.org"),
    (1002, "grace", "grace@example.org"),
    (1003, "linus", "linus@example.org"),
    (1004, "margaret", "margaret@example.org"),
    (1005, "alan", "alan@example.org"),
    (1006, "barbara", "barbara@example.org"),
]
PROBLEM_PREFIX = "block-v1:DemoX+Stats201+2024_T1+type@problem+block@"
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
    "edX/org.edx.mobile (3.2.1; OS Version 17.4; Mobile)",
]


def _video(rng: random.Random, name: str) -> dict[str, Any]:
    return {
        "id": f"block-v1:DemoX+Py101+2024_T1+type@video+block@{rng.randrange(16**8):08x}",
        "currentTime": round(rng.uniform(0, 900), 1),
        "code": rng.choice(["html5", "mobile", "youtube"]),
        **({"speed": rng.choice(["1.0", "1.25", "1.5"])} if name.endswith("played") else {}),
    }


def _problem(rng: random.Random, _name: str) -> dict[str, Any]:
    max_grade = rng.choice([1, 2, 5])
    grade = rng.randint(0, max_grade)
    return {
        "problem_id": PROBLEM_PREFIX + f"{rng.randrange(16**8):08x}",
        "attempts": rng.randint(1, 3),
        "grade": grade,
        "max_grade": max_grade,
        "success": "correct" if grade == max_grade else "incorrect",
    }


def _enrollment(rng: random.Random, _name: str) -> dict[str, Any]:
    return {"mode": rng.choice(["audit", "verified", "honor"])}


def _navigation(rng: random.Random, _name: str) -> dict[str, Any]:
    return {"old": rng.randint(1, 8), "new": rng.randint(1, 8), "tab_count": 8}


def _forum(rng: random.Random, _name: str) -> dict[str, Any]:
    return {
        "commentable_id": f"{rng.randrange(16**6):06x}",
        "title": rng.choice(["Question about week 2", "Study group?", "Typo in lecture 3"]),
        "anonymous": False,
    }


def _password_reset(rng: random.Random, _name: str) -> dict[str, Any]:
    return {"reset_token": f"{rng.randrange(16**16):016x}"}


EVENTS: list[tuple[str, Any, int]] = [
    ("edx.video.played", _video, 30),
    ("edx.video.paused", _video, 20),
    ("edx.video.stopped", _video, 6),
    ("problem_check", _problem, 15),
    ("edx.grades.problem.submitted", _problem, 8),
    ("edx.course.enrollment.activated", _enrollment, 5),
    ("edx.course.enrollment.deactivated", _enrollment, 1),
    ("edx.ui.lms.sequence.next_selected", _navigation, 10),
    ("edx.forum.thread.created", _forum, 3),
    ("edx.user.password_reset.requested", _password_reset, 2),
]


def make_events(count: int = COUNT, seed: int = SEED) -> list[dict[str, Any]]:
    """The example events, as JSON-ready dicts."""
    rng = random.Random(seed)
    names = [name for name, _, _ in EVENTS]
    weights = [weight for _, _, weight in EVENTS]
    makers = {name: maker for name, maker, _ in EVENTS}
    when = START
    events = []
    for _ in range(count):
        name = rng.choices(names, weights)[0]
        user_id, username, email = rng.choice(USERS)
        course = rng.choice(COURSES)
        when += dt.timedelta(seconds=rng.randint(1, 90))
        context = {
            "user_id": user_id,
            "username": username,
            "course_id": course,
            "org_id": course.split(":")[1].split("+")[0],
            "ip": f"203.0.113.{rng.randint(1, 254)}",
            "agent": rng.choice(AGENTS),
            "host": "lms.example.org",
            "path": "/courses/" + course + "/courseware",
        }
        data = makers[name](rng, name)
        if name.startswith("edx.course.enrollment") or name.startswith("edx.user"):
            data["email"] = email
        events.append(
            {
                "name": name,
                "timestamp": when.isoformat().replace("+00:00", "Z"),
                "data": data,
                "context": context,
            }
        )
    return events


def main() -> None:
    """Write the events as JSON lines to the given path (default examples/events.jsonl)."""
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/events.jsonl")
    with target.open("w", encoding="utf-8") as out:
        for event in make_events():
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
