"""Apply each mutation of tests/mutants.md to a temporary copy and show its tests failing.

Usage: ``python scripts/check_mutants.py [WORD ...]`` (only the mutants whose title contains
one of the words). Exit status 0 when every mutant was killed (its tests failed), 1 when one
survived or could not be applied.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MUTANTS = REPO / "tests" / "mutants.md"
COPIED = ("eventrouter", "tests", "examples", "scripts", "pyproject.toml")
_FENCE = re.compile(r"^```(before|after)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass
class Mutant:
    title: str
    file: str = ""
    tests: list[str] = field(default_factory=list)
    before: str = ""
    after: str = ""


def parse(text: str) -> list[Mutant]:
    """The mutants of the Markdown text: one per ``## `` section that names a file."""
    mutants: list[Mutant] = []
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = section.partition("\n")
        mutant = Mutant(title.strip())
        for line in body.splitlines():
            if line.startswith("file:"):
                mutant.file = line.partition(":")[2].strip()
            elif line.startswith("test:"):
                mutant.tests.append(line.partition(":")[2].strip())
        for kind, block in _FENCE.findall(body):
            setattr(mutant, kind, block)
        if mutant.file:
            mutants.append(mutant)
    return mutants


def run(mutant: Mutant, workdir: Path) -> tuple[bool, str]:
    """Apply ``mutant`` in a fresh copy under ``workdir`` and run its tests; return whether
    it was killed and a one-line verdict."""
    copy = workdir / "repo"
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, copy / name)
    target = copy / mutant.file
    text = target.read_text()
    found = text.count(mutant.before)
    if found != 1 or not mutant.before:
        return False, f"NOT APPLIED: the `before` text is found {found} times in {mutant.file}"
    target.write_text(text.replace(mutant.before, mutant.after))
    env = {**os.environ, "PYTHONPATH": str(copy)}  # subprocesses import the mutant too
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *mutant.tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 1:
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
        return True, f"killed: {failed[0] if failed else 'tests failed'}"
    if result.returncode == 0:
        return False, "SURVIVED: every named test passed against the mutant"
    return False, f"ERROR: pytest exited {result.returncode}: {result.stdout[-300:]}"


def main(argv: list[str]) -> int:
    mutants = parse(MUTANTS.read_text())
    if argv:
        mutants = [m for m in mutants if any(w.lower() in m.title.lower() for w in argv)]
    survivors = 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as temp:
        for mutant in mutants:
            killed, verdict = run(mutant, Path(temp))
            survivors += not killed
            print(f"{mutant.title}: {verdict}", flush=True)
    print(f"{len(mutants) - survivors} of {len(mutants)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
