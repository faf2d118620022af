"""Every code block of README.md and docs/**/*.md runs as written.

Each page runs in a fresh interpreter (Django's settings, the tracker registry and Celery
apps are process-wide), in a temporary directory that is also on ``sys.path``:

- ```python blocks run in order, sharing one namespace per page;
- ```yaml blocks are routing trees (a whole tree, a mapping of named nodes, or one named
  node) and are validated with ``eventrouter.config.read_config``; ``${SEGMENT_WRITE_KEY}``
  and the like are set to placeholders;
- ```console blocks run each ``$ eventrouter ...`` line through the CLI and expect exit 0;
- a block with ``title="NAME"`` (```yaml title="routing.yaml") is also saved as that file
  in the temporary directory, before it runs, for the blocks after it;
- ```python title="illustration", ```text, ```toml, ```bash and blocks right after a
  ``<!-- illustration -->`` line only illustrate and are not run.

A page that needs a server says so in a comment anywhere in it:
``<!-- docs-test: needs mongo segment -->``. The test then starts the fixture and passes its
address in the environment: ``MONGODB_URI`` for ``mongo``, ``SEGMENT_HOST`` for ``segment``.

Run one page by hand with ``python tests/test_docs.py docs/getting-started.md``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)
NEEDS = re.compile(r"<!-- docs-test: needs ([\w ]+) -->")
ILLUSTRATION = "<!-- illustration -->"
RUN = {"python", "yaml", "console"}
SHOWN = {"text", "toml", "bash", "ini", "json", ""}
PLACEHOLDERS = {  # for validation only: pages that connect ask for a fixture
    "SEGMENT_WRITE_KEY": "docs-example-write-key",
    "MONGODB_URI": "mongodb://127.0.0.1:9/docs",
    "MONGO_URI": "mongodb://127.0.0.1:9/docs",
}
PAGE_TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, whether it only illustrates, its text and line."""

    language: str
    illustration: bool
    code: str
    line: int
    title: str | None = None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    text = page.read_text(encoding="utf-8")
    found: list[Block] = []
    for match in FENCE.finditer(text):
        info = match.group("info").strip()
        language = info.split()[0] if info else ""
        before = text[: match.start()].rstrip().splitlines()
        after_comment = bool(before) and before[-1].strip() == ILLUSTRATION
        marked = 'title="illustration"' in info or after_comment
        indent = match.group("indent")
        code = "".join(
            line[len(indent) :] if line.startswith(indent) else line
            for line in match.group("body").splitlines(keepends=True)
        )
        line = text.count("\n", 0, match.start()) + 2
        title = re.search(r'title="([^"]+)"', info)
        saved = title.group(1) if title and not marked else None
        found.append(Block(language, marked, code, line, saved))
    return found


def needs(page: Path) -> set[str]:
    """The fixtures a page asks for."""
    return {word for m in NEEDS.finditer(page.read_text(encoding="utf-8")) for word in m[1].split()}


# -- the checks ------------------------------------------------------------------------------


def test_every_page_is_collected() -> None:
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) >= 15


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_is_runnable_or_marked(page: Path) -> None:
    for block in blocks(page):
        if block.illustration:
            continue
        assert block.language in RUN | SHOWN, (
            f"{page.name}:{block.line}: ```{block.language} blocks cannot be run; "
            "mark the block as an illustration or use python, yaml or console"
        )


def test_illustrations_are_few() -> None:
    every = [b for page in PAGES for b in blocks(page) if b.language in RUN or b.illustration]
    marked = [b for b in every if b.illustration]
    assert len(marked) * 5 <= len(every), f"{len(marked)} of {len(every)} blocks only illustrate"


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=[pytest.mark.peers] if needs(p) else [])
        for p in PAGES
        if any(b.language in RUN and not b.illustration for b in blocks(p))
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_pages_blocks_run(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {**PLACEHOLDERS, **os.environ}
    wanted = needs(page)
    if "mongo" in wanted:
        env["MONGODB_URI"] = request.getfixturevalue("mongo_uri")
    if "segment" in wanted:
        env["SEGMENT_HOST"] = request.getfixturevalue("segment_ingest").url
    result = subprocess.run(
        [sys.executable, __file__, str(page)],
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the generated references and the site's navigation ---------------------------------------


def _generator() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "docs" / "gen_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_yaml_reference_lists_every_name_and_option() -> None:
    import inspect

    from eventrouter import registry

    generator = _generator()
    page, code = generator.yaml_reference(), generator.code
    for kind in ("backend", "processor"):
        for name in registry.known_names(kind):
            assert f"### `{name}`" in page, name
            target = registry.resolve(kind, name)
            section = page.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
            if "Another name for" in section:
                continue
            for option, parameter in inspect.signature(target).parameters.items():
                if name == "buffered" and option == "backend":  # the node it is the key of
                    assert f"| `{option}` |" not in section
                    continue
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    assert "Any other option is accepted" in section, name
                elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
                    default = parameter.default
                    shown = "**required**" if default is parameter.empty else code(repr(default))
                    rows = [r for r in section.splitlines() if r.startswith(f"| `{option}` |")]
                    assert len(rows) == 1, (name, option)
                    assert shown in rows[0], (name, option)


def test_the_yaml_reference_explains_buffered_as_a_key_of_a_backend_node() -> None:
    page = _generator().yaml_reference()
    section = page.split("### `buffered`", 1)[1].split("\n### ", 1)[0]
    assert "not a node class but a key of a backend node" in section
    assert "**required**" not in section
    yaml_block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    from eventrouter.config import read_config

    read_config(yaml.safe_load(yaml_block), env={"SEGMENT_WRITE_KEY": "k3y"})


def test_the_yaml_reference_shows_constants_by_value_and_the_enrich_sources() -> None:
    page = _generator().yaml_reference()
    [host] = [r for r in page.splitlines() if r.startswith("| `host` |") and "endpoint" in r]
    assert "'https://api.segment.io'" in host
    assert "DEFAULT_" not in page
    enrich = page.split("### `enrich`", 1)[1].split("\n### ", 1)[0]
    for form in (
        "hostname",
        "pid",
        "version:&lt;distribution&gt;",
        "env:&lt;NAME&gt;:-&lt;default&gt;",
    ):
        assert f"<code>{form}</code>" in enrich


def test_the_cli_reference_shows_every_command() -> None:
    page = _generator().cli_reference()
    for command in ("validate", "tree", "route", "replay", "worker"):
        assert f"## `eventrouter {command}`" in page
        assert f"usage: eventrouter {command}" in page


def test_the_pages_with_a_generated_part_have_it() -> None:
    generator = _generator()
    for name in ("yaml", "cli"):
        page = ROOT / "docs" / "reference" / f"{name}.md"
        assert f"<!-- generated: {name} -->" in page.read_text(encoding="utf-8")
        assert generator.GENERATORS[name]().strip() in generator.expand(
            page.read_text(encoding="utf-8")
        )


NOT_YET_WRITTEN: set[str] = set()  # nav entries whose page is still to come


def test_the_navigation_lists_every_page_and_only_pages_that_exist() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def files(entries: Any) -> list[str]:
        found: list[str] = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found += files(value) if isinstance(value, list) else [value]
        return found

    listed = set(files(config["nav"]))
    present = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert present - listed == set(), "pages missing from the nav in mkdocs.yml"
    assert listed - present <= NOT_YET_WRITTEN, "nav entries without a page"


# -- the runner (in the page's own interpreter) ----------------------------------------------


def _validate_yaml(code: str, where: str) -> None:
    import yaml

    from eventrouter.config import read_config

    data: Any = yaml.safe_load(code)
    if not isinstance(data, dict):
        raise AssertionError(f"{where}: a YAML block must be a routing tree or named nodes")
    if data.keys() & {"backends", "processors", "dead_letter"}:
        source = Path("docs-block.yaml")  # read from a file, so problems carry its lines
        source.write_text(code, encoding="utf-8")
        read_config(source)
    else:  # named nodes, or one node without its name
        read_config({"backends": {"node": data} if "class" in data else data})


def _run_console(code: str, where: str) -> None:
    import shlex

    for number, line in enumerate(code.splitlines()):
        if not line.startswith("$ "):
            continue
        words = shlex.split(line[2:], comments=True)
        if words[0] == "eventrouter":
            words = [sys.executable, "-m", "eventrouter", *words[1:]]
        else:
            raise AssertionError(f"{where}+{number}: only `$ eventrouter ...` lines can run")
        done = subprocess.run(words, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{where}+{number}: {line}\n{done.stdout}{done.stderr}"


def run_page(page: Path) -> None:
    """Run every runnable block of ``page`` in order (in the current directory)."""
    import types

    sys.path.insert(0, os.getcwd())
    for name, value in PLACEHOLDERS.items():
        os.environ.setdefault(name, value)
    module = types.ModuleType("docs_page")  # a real module, for what pickles or imports by name
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    for block in blocks(page):
        if block.title:  # a file the page's commands use
            Path(block.title).parent.mkdir(parents=True, exist_ok=True)
            Path(block.title).write_text(block.code, encoding="utf-8")
        if block.illustration or block.language not in RUN:
            continue
        where = f"{page.name}:{block.line}"
        if block.language == "python":
            exec(compile(block.code, where, "exec"), namespace)
        elif block.language == "yaml":
            _validate_yaml(block.code, where)
        else:
            _run_console(block.code, where)


if __name__ == "__main__":
    run_page(Path(sys.argv[1]).resolve())
