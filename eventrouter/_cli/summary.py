"""The tables ``route`` and ``replay`` print when they are done."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from eventrouter._cli.console import stdout
from eventrouter.config import ConfigNode, ConfigTree

if TYPE_CHECKING:
    from eventrouter._cli.route import RouteCounts

_SHOWN_OPTIONS = ("path", "logger_name", "uri", "database", "collection", "allow", "block")
"""The options a leaf backend's row shows (those that tell where its events go)."""


def processor_errors_of(stats: Mapping[str, Any]) -> int:
    """The processor errors of a router's stats and of every router below it."""
    total = int(stats.get("processor_errors") or 0)
    for entry in (stats.get("backends") or {}).values():
        child = entry.get("stats") if isinstance(entry, Mapping) else None
        if isinstance(child, Mapping) and "processor_errors" in child:
            total += processor_errors_of(child)
    return total


@dataclass
class _Row:
    path: str
    node: ConfigNode | None
    delivered: int | None = None
    failed: int | None = None
    note: str = ""


def _rows(stats: Mapping[str, Any], nodes: Mapping[str, ConfigNode], prefix: str) -> Iterator[_Row]:
    """A row per node below ``nodes``, depth first, from the router's ``stats()``."""
    entries: Mapping[str, Any] = stats.get("backends", {})
    for name, node in nodes.items():
        path = f"{prefix}{name}"
        entry = entries.get(name)
        if entry is None:
            yield _Row(path, node, note="disabled" if not node.enabled else "not built")
            continue
        child: Mapping[str, Any] = entry.get("stats") or {}
        if node.router:
            note = f"router: vetoed {child.get('vetoed', 0)}"
            if child.get("processor_errors"):
                note += f", processor errors {child['processor_errors']}"
            yield _Row(path, node, entry.get("delivered"), entry.get("failed"), note)
            yield from _rows(child, node.backends, f"{path}.")
            continue
        details = [f"{k}={v}" for k, v in node.shown_options().items() if k in _SHOWN_OPTIONS]
        details += [f"{k}: {v}" for k, v in child.items() if isinstance(v, int) and v]
        yield _Row(path, node, entry.get("delivered"), entry.get("failed"), "  ".join(details))


def print_route_summary(
    config: ConfigTree, stats: Mapping[str, Any], counts: RouteCounts, source: str
) -> int:
    """Print ``route``'s input counts and a row per node of the tree; returns the events
    the leaf backends failed on."""
    console = stdout()
    totals = Table(title="input", show_header=False, title_justify="left")
    totals.add_column("what")
    totals.add_column("count", justify="right")
    totals.add_row("file", Text(source))
    totals.add_row("read", str(counts.read))
    totals.add_row("rejected (malformed)", str(counts.rejected))
    totals.add_row("routed", str(counts.routed))
    totals.add_row("vetoed at the root", str(stats.get("vetoed", 0)))
    totals.add_row("processor errors (all routers)", str(processor_errors_of(stats)))
    console.print(totals)

    table = Table(title="backends", title_justify="left")
    table.add_column("backend")
    table.add_column("class")
    table.add_column("delivered", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("notes")
    failed = 0
    for row in _rows(stats, config.backends, ""):
        assert row.node is not None
        is_leaf = not row.node.router
        if is_leaf and row.failed:
            failed += row.failed
        style = "dim" if row.note in ("disabled", "not built") else None
        table.add_row(
            Text(row.path),
            Text(row.node.shown_class),
            "-" if row.delivered is None else str(row.delivered),
            "-" if row.failed is None else str(row.failed),
            Text(row.note),
            style=style,
        )
    console.print(table)
    return failed


def print_replay_summary(report: Any, dry_run: bool) -> None:
    """Print a row per destination of a replay report, then what became of its files."""
    console = stdout()
    table = Table(
        title="replay (dry run: nothing sent)" if dry_run else "replay", title_justify="left"
    )
    table.add_column("destination")
    table.add_column("records", justify="right")
    if not dry_run:
        table.add_column("delivered", justify="right")
        table.add_column("failed again", justify="right")
    for path, counts in sorted(report.destinations.items()):
        row: list[Text | str] = [Text(path), str(counts.records)]
        if not dry_run:
            row += [str(counts.delivered), str(counts.failed_again + counts.lost)]
        table.add_row(*row)
    console.print(table)
    if report.unknown:
        shown = ", ".join(sorted(report.unknown_paths)[:5])
        console.print(f"not in the tree (carried over): {report.unknown} ({shown})")
    if report.carried:
        console.print(f"carried over unchanged: {report.carried}")
    if report.damaged:
        console.print(f"damaged lines skipped: {report.damaged}")
    if dry_run:
        return
    written = report.dead_letter is not None and report.dead_letter.exists()
    console.print(f"new dead-letter file: {report.dead_letter if written else '(none needed)'}")
    for path in report.renamed:
        console.print(f"settled: {path} -> {path.name}.replayed")
    for path in report.kept:
        console.print(f"kept (not all settled): {path}")
