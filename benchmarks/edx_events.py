"""The event the benchmarks send: a realistic ~1 KB Open edX-style event."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

Event = dict[str, Any]


def edx_event(n: int = 0) -> Event:
    """A realistic ~1 KB event as the Open edX LMS emits them; ``n`` varies one value."""
    return {
        "id": str(uuid.uuid4()),
        "name": "edx.video.played",
        "timestamp": dt.datetime(2026, 11, 20, 12, 30, 5, 123456, tzinfo=dt.UTC),
        "data": {
            "id": "i4x-HarvardX-CS50-video-5a1b6c2d",
            "code": "html5",
            "currentTime": 131.52 + n,
            "duration": 642.0,
            "speed": "1.50",
            "transcripts": ["en", "es", "fr"],
            "module_id": "block-v1:HarvardX+CS50+2026_T1+type@video+block@5a1b6c2d",
        },
        "context": {
            "user_id": 4815162342,
            "username": "learner_0042",
            "course_id": "course-v1:HarvardX+CS50+2026_T1",
            "org_id": "HarvardX",
            "session": "c6f1e2d3a4b5c6d7e8f9a0b1c2d3e4f5",
            "ip": "203.0.113.42",
            "agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari",
            "host": "courses.example.org",
            "path": "/event",
            "referer": "https://courses.example.org/courses/course-v1:HarvardX+CS50/courseware",
            "accept_language": "en-US,en;q=0.9",
            "page": "https://courses.example.org/courses/course-v1:HarvardX+CS50/courseware/w1",
            "enterprise_uuid": "",
            "module": {"display_name": "Lecture 1: Scratch", "usage_key": "block-v1:x"},
            "asides": {},
            "tags": ["video", "lecture", "week-1"],
        },
    }
