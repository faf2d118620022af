"""Name patterns: one syntax for everything that matches event names (and keys, and values).

A pattern is one of:

- **exact**: ``video.played`` matches that name only.
- **topic** (AMQP style), when a dot-separated word is ``*`` or ``#`` or contains ``*``:

  - ``*`` as a whole word matches exactly one word: ``video.*`` matches ``video.played``,
    not ``video`` nor ``video.a.b``;
  - ``#`` as a whole word matches zero or more words: ``problem.#`` matches ``problem``,
    ``problem.check`` and ``problem.a.b``; ``#.graded`` matches ``graded`` and
    ``x.y.graded``; ``#`` alone matches every name;
  - ``*`` inside a word matches any run of characters other than ``.``: ``video.play*``
    matches ``video.played``; ``*password*`` matches ``new_password``;
  - words are what lies between dots and may be empty: ``a.*.b`` matches ``a..b``;
  - ``#`` inside a word (``a#b``) and every other character are literal.
- **regular expression**, prefixed with ``re:``: ``re:^(video|audio)\\.`` ... The expression
  must match the **whole** name (``re.fullmatch``); write ``re:.*foo.*`` to match ``foo``
  anywhere. (event-tracking's ``RegexFilter`` used ``re.match``, anchored at the start only:
  its ``expr`` is ours ``re:(?:expr).*``.)

Patterns are compiled once, at construction; an invalid one raises :class:`ValueError` that
names it. Matching is case-sensitive unless ``ignore_case=True``.

What is matched is not always a dotted name: dictionary keys (``Redact``'s key patterns) are
matched with ``dotted=False``, where ``*`` matches any run of characters, dots included
(``*password*`` matches ``user.password``), and ``#`` is literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from eventrouter._options import refuse_bare_string

__all__ = ["NamePattern", "PatternSet"]

REGEX_PREFIX = "re:"

PatternKind = Literal["exact", "topic", "glob", "regex"]


def _glob_word(word: str) -> str:
    """Regex for one topic word: ``*`` is any run of non-dot characters, the rest literal."""
    return "[^.]*".join(re.escape(part) for part in word.split("*"))


def _topic_regex(text: str) -> str:
    """Translate a topic pattern into a regular expression for ``fullmatch``."""
    words: list[str] = []
    for word in text.split("."):
        if word == "#" and words and words[-1] == "#":
            continue  # "#.#" matches what "#" matches
        words.append(word)
    if words == ["#"]:
        return r"(?s:.*)"
    parts: list[str] = []
    need_separator = False
    last = len(words) - 1
    for position, word in enumerate(words):
        if word == "#":
            if position == last:
                parts.append(r"(?:\.[^.]*)*")  # ".#" at the end: zero or more ".word"
            else:
                if need_separator:
                    parts.append(r"\.")
                parts.append(r"(?:[^.]*\.)*")  # "#." : zero or more "word."
                need_separator = False
            continue
        if need_separator:
            parts.append(r"\.")
        parts.append(_glob_word(word))
        need_separator = True
    return "".join(parts)


def _classify(text: object, dotted: bool = True) -> tuple[PatternKind, str]:
    """Return the kind of a pattern and the regex source (or the exact text)."""
    if not isinstance(text, str):
        raise TypeError(f"a name pattern must be a string, not {type(text).__name__}: {text!r}")
    if text.startswith(REGEX_PREFIX):
        source = text[len(REGEX_PREFIX) :]
        if not source:
            raise ValueError(f"invalid name pattern {text!r}: the regular expression is empty")
        return "regex", source
    if not text:
        raise ValueError("invalid name pattern '': a pattern may not be empty")
    if not dotted:
        if "*" in text:
            return "glob", "(?s:.*)".join(re.escape(part) for part in text.split("*"))
        return "exact", text
    if "*" in text or "#" in text.split("."):
        return "topic", _topic_regex(text)
    return "exact", text


def _compile(text: str, source: str, ignore_case: bool) -> re.Pattern[str]:
    try:
        return re.compile(source, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"invalid name pattern {text!r}: {exc}") from None


class NamePattern:
    """One compiled name pattern (see the module documentation for the syntax).

    Args:
        text: the pattern.
        ignore_case: match regardless of case.
        dotted: what is matched is a dotted name (``*`` and ``#`` work on words); with
            ``False`` (keys), ``*`` matches any characters, dots included.

    Raises:
        TypeError: ``text`` is not a string.
        ValueError: the pattern is empty or its regular expression does not compile.

    Attributes:
        text: the pattern as written.
        kind: ``"exact"``, ``"topic"``, ``"glob"`` (``dotted=False``) or ``"regex"``.
    """

    __slots__ = ("_exact", "_regex", "kind", "text")

    def __init__(self, text: str, *, ignore_case: bool = False, dotted: bool = True) -> None:
        kind, source = _classify(text, dotted)
        self.text: str = text
        self.kind: PatternKind = kind
        self._exact: str | None = None
        self._regex: re.Pattern[str] | None = None
        if kind == "exact" and not ignore_case:
            self._exact = text
        else:
            self._regex = _compile(
                text, re.escape(source) if kind == "exact" else source, ignore_case
            )

    @property
    def regex(self) -> str:
        """The regular expression (for ``fullmatch``) equivalent to this pattern."""
        return self._regex.pattern if self._regex is not None else re.escape(self.text)

    def matches(self, name: object) -> bool:
        """Whether ``name`` matches; anything that is not a string never matches."""
        if not isinstance(name, str):
            return False
        if self._exact is not None:
            return name == self._exact
        assert self._regex is not None
        return self._regex.fullmatch(name) is not None

    def __repr__(self) -> str:
        return f"NamePattern({self.text!r})"


class PatternSet:
    """A compiled set of patterns that matches a name when any of its patterns does.

    Built for the hot path: exact names are looked up in a frozenset, topic patterns are
    combined into one regular expression, ``re:`` expressions are kept apart (so that their
    groups and back-references keep their meaning), and the answers for the last
    ``cache_size`` distinct names are remembered (event names are few; set ``cache_size=0``
    when matching high-cardinality values such as ids).

    Args:
        patterns: the patterns; a bare string is refused (it is always a mistake for a list).
        ignore_case: match regardless of case.
        dotted: see :class:`NamePattern`; ``False`` to match dictionary keys.
        cache_size: how many distinct names to remember answers for; 0 disables the cache.

    Raises:
        TypeError: ``patterns`` is a string or holds a non-string.
        ValueError: a pattern is invalid (the message names it).
    """

    __slots__ = ("_cache", "_cache_size", "_combined", "_exact", "_regexes", "patterns")

    def __init__(
        self,
        patterns: Iterable[str],
        *,
        ignore_case: bool = False,
        dotted: bool = True,
        cache_size: int = 1024,
    ) -> None:
        refuse_bare_string("patterns", patterns, "a list of strings")
        compiled = [NamePattern(text, ignore_case=ignore_case, dotted=dotted) for text in patterns]
        self.patterns: tuple[str, ...] = tuple(pattern.text for pattern in compiled)
        exact: set[str] = set()
        combined: list[str] = []
        regexes: list[re.Pattern[str]] = []
        for pattern in compiled:
            if pattern._exact is not None:
                exact.add(pattern._exact)
            elif pattern.kind == "regex" and pattern._regex is not None:
                regexes.append(pattern._regex)
            else:
                combined.append(f"(?:{pattern.regex})")
        self._exact: frozenset[str] = frozenset(exact)
        self._combined: re.Pattern[str] | None = (
            re.compile("|".join(combined), re.IGNORECASE if ignore_case else 0)
            if combined
            else None
        )
        self._regexes: tuple[re.Pattern[str], ...] = tuple(regexes)
        self._cache: dict[str, bool] = {}
        self._cache_size = cache_size

    def matches(self, name: object) -> bool:
        """Whether ``name`` matches any pattern; a non-string never matches."""
        if not isinstance(name, str):
            return False
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        result = self._match(name)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[name] = result
        return result

    def _match(self, name: str) -> bool:
        if name in self._exact:
            return True
        if self._combined is not None and self._combined.fullmatch(name) is not None:
            return True
        return any(regex.fullmatch(name) is not None for regex in self._regexes)

    def __len__(self) -> int:
        return len(self.patterns)

    def __repr__(self) -> str:
        return f"PatternSet({list(self.patterns)!r})"
