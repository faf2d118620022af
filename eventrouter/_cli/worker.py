"""``eventrouter worker CONFIG``: run a Celery worker for the tree's celery nodes."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Serve the subtrees of the celery nodes on ``--queue`` (default: all) until stopped."""
    from eventrouter import worker

    queues = [q for value in args.queue for q in value.split(",") if q]
    metrics = None
    if args.metrics_port is not None:  # prefork children count: sum them through files
        from eventrouter.metrics import use_multiprocess_dir

        use_multiprocess_dir()
        metrics = (args.metrics_port, args.metrics_host)
    return worker.run(
        args.config,
        queues=queues,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        dead_letter=args.dead_letter,
        metrics=metrics,
    )
