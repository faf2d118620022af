"""``eventrouter tree CONFIG``: draw the routing tree with rich."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from rich.text import Text
from rich.tree import Tree

from eventrouter._cli.console import load_config, stdout
from eventrouter._cli.exit import EXIT_OK
from eventrouter.config import ConfigNode


def run(args: argparse.Namespace) -> int:
    """Draw routers, processors, backends and their key options (secrets masked, values
    from the environment shown as written), then the one-line summary."""
    config = load_config(args)
    root = Tree(Text(f"{args.config} (root router)", style="bold"))
    _add_children(root, config.processors, config.backends)
    console = stdout()
    console.print(root)
    console.print(config.summary())
    return EXIT_OK


def _label(node: ConfigNode, *, show_options: bool = True) -> Text:
    text = Text()
    if node.kind == "backend":
        text.append(node.name, style="bold")
        text.append(": ")
    text.append("router" if node.router and node.class_name == "router" else node.shown_class)
    if node.router and node.class_name != "router":
        text.append(" (router)")
    if show_options:
        for key, value in node.shown_options().items():
            text.append(f"  {key}=", style="cyan")
            text.append(value)
    if node.buffered is not None:
        text.append("  (buffered)", style="green")
    mark = _celery_mark(node)
    if mark:
        text.append(mark, style="bold green")
    if not node.enabled:
        text.append("  [disabled]", style="bold yellow")
        text.stylize("dim")
    return text


def _celery_mark(node: ConfigNode) -> str:
    """``[celery workers, queue Q]`` for a celery node (its backends run on workers)."""
    from eventrouter.backends.celery import MEMORY_BROKER, CeleryRouter

    target = node.target
    if not (isinstance(target, type) and issubclass(target, CeleryRouter)):
        return ""
    if node.options.get("broker", MEMORY_BROKER) == MEMORY_BROKER:
        return "  [celery, in this process: memory://]"
    return f"  [celery workers, queue {node.options.get('queue', 'eventrouter')}]"


def _add_children(
    branch: Tree, processors: list[ConfigNode], backends: Mapping[str, ConfigNode]
) -> None:
    if processors:
        chain = branch.add(Text("processors", style="magenta"))
        for processor in processors:
            chain.add(_label(processor))
    for child in backends.values():
        sub = branch.add(_label(child))
        if child.router:
            _add_children(sub, child.processors, child.backends)
