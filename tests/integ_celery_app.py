"""The Celery app of the integration tests: one task that emits an event.

The test process imports it to send tasks; ``celery -A integ_celery_app worker`` imports it
to run them, with ``INTEG_EVENTS_FILE`` naming the JSON-lines file its tracker writes.
"""

from __future__ import annotations

import os

from celery import Celery

from eventrouter import tracker
from eventrouter.integrations.celery import carry_context

app = Celery("integ", broker=os.environ.get("INTEG_BROKER_URL", "memory://"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_acks_late=False,
    # every key of this run under a prefix of its own: the test Redis is shared
    broker_transport_options={"global_keyprefix": os.environ.get("INTEG_KEYPREFIX", "")},
)
carry_context()

if os.environ.get("INTEG_EVENTS_FILE"):  # in the worker
    from eventrouter.backends.logger import LoggerBackend

    tracker.register_tracker(
        tracker.Tracker(backends={"file": LoggerBackend(path=os.environ["INTEG_EVENTS_FILE"])})
    )


@app.task(name="integ.record")
def record(label: str) -> None:
    """Emit ``task.ran``; the event's context is the one the task runs in."""
    tracker.emit("task.ran", {"label": label})
    tracker.emit("task.seen", {"context_during_task": tracker.get_tracker().resolve_context()})
