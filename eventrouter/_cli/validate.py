"""``eventrouter validate CONFIG``: check a configuration without building it."""

from __future__ import annotations

import argparse

from eventrouter._cli.console import load_config
from eventrouter._cli.exit import EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Print a one-line summary and the migration notes of a valid configuration.

    An invalid one raises :class:`~eventrouter.errors.ConfigError` (every problem, exit 2).
    """
    tree = load_config(args)
    origin = " (translated from event-tracking settings)" if tree.migrated else ""
    print(f"{args.config}: valid{origin}: {tree.summary()}")
    for note in tree.notes:
        print(f"  note: {note}")
    return EXIT_OK
