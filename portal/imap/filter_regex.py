"""Regular expressions of filters, on a budget (pure).

A pattern's worst-case size is measured on the engine's own parse tree before anything is
compiled (nested counted repeats multiply); compiled patterns live in a cache bounded by their
total size; all the regex work on one message shares one time budget.
"""
from __future__ import annotations

import functools
import time
from collections import OrderedDict

import regex
from regex import _regex_core

# Sizes of patterns are counted in expanded steps (see expanded_size); a step of the compiled
# engine costs about 270 bytes, so a pattern at the limit compiles to about 3 MB.
MAX_PATTERN_SIZE = 10_000
MAX_FILTER_PATTERN_SIZE = 50_000  # all the patterns of one filter together
PATTERN_CACHE_SIZE = 200_000  # compiled patterns kept across filters, in the same steps
REGEX_BUDGET_SECONDS = 0.25  # CPU time for all regex work on one message: every condition and value


class RegexBudgetExceeded(Exception):
    """The message used up its regex time budget."""


@functools.lru_cache(maxsize=1024)
def inspect_pattern(pattern: str) -> tuple[int, str | None]:
    """(expanded size, problem or None). Measured before anything is compiled, and a pattern
    over the size limit is never compiled: the engine expands nested counted repeats at
    compile time, and (?:(?:a{1000}){1000}){1000} alone would take gigabytes."""
    try:
        size = expanded_size(pattern)
        if size <= MAX_PATTERN_SIZE:
            compiled(pattern, False)
    except regex.error as exc:
        return 0, str(exc)
    except ValueError as exc:  # conflicting flags, e.g. (?a)(?u)
        return 0, str(exc)
    except RecursionError:
        return 0, "groups are nested too deeply"
    return size, None


def expanded_size(pattern: str) -> int:
    """How many steps the engine's compiled form of ``pattern`` has, about: a repeat counts
    its body times its largest finite count, so nested counted repeats multiply.

    Read off the engine's own parse tree (the first half of regex.compile, which builds no
    program), so scoped flags, verbose comments and sets mean exactly what they mean to the
    compiler. Raises regex.error like regex.compile."""
    flags = 0
    while True:
        source = _regex_core.Source(pattern)
        info = _regex_core.Info(flags, source.char_type, {})
        source.ignore_space = bool(info.flags & regex.VERBOSE)
        try:
            tree = _regex_core._parse_pattern(source, info)
            break
        except _regex_core._UnscopedFlagSet:  # a global flag seen late: parse again with it
            flags = info.global_flags
    if not source.at_end():
        raise regex.error("unbalanced parenthesis", pattern, source.pos)
    return _node_size(tree)


def _node_size(node) -> int:
    children = [child for value in vars(node).values() for child in _nodes_in(value)]
    if not children:
        return 1
    size = sum(_node_size(child) for child in children)
    if hasattr(node, "min_count"):  # GreedyRepeat, LazyRepeat, PossessiveRepeat
        size *= max(node.min_count, node.max_count or 0, 1)
    return size


def _nodes_in(value):
    if isinstance(value, _regex_core.RegexBase):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _nodes_in(item)


class RegexBudget:
    """One deadline for all the regex searches of one message. It runs on the clock the
    engine's own `timeout` runs on (seen here: the process's CPU time), so that a busy
    machine stretches both alike."""

    __slots__ = ("deadline",)

    def __init__(self, seconds: float):
        self.deadline = time.process_time() + seconds

    def search(self, pattern, text: str) -> bool:
        left = self.deadline - time.process_time()
        if left <= 0:
            raise RegexBudgetExceeded()
        try:
            return pattern.search(text, timeout=left) is not None
        except TimeoutError:
            raise RegexBudgetExceeded() from None


class PatternCache:
    """Compiled patterns, least recently used out first, bounded by their total size in
    steps (not by their number: one large pattern weighs as much as thousands of small ones)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.entries: OrderedDict[tuple[str, bool], tuple[object, int]] = OrderedDict()
        self.size = 0
        self.compiles = 0

    def get(self, pattern: str, case_sensitive: bool):
        key = (pattern, case_sensitive)
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
            return entry[0]
        size = expanded_size(pattern)
        if size > MAX_PATTERN_SIZE:  # validation rejects these; never compile one
            raise regex.error(f"pattern is too large ({size} steps)")
        compiled = regex.compile(pattern, 0 if case_sensitive else regex.IGNORECASE)
        self.compiles += 1
        self.entries[key] = (compiled, size)
        self.size += size
        while self.size > self.budget and len(self.entries) > 1:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.size -= dropped
        return compiled

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0
        self.compiles = 0


pattern_cache = PatternCache(PATTERN_CACHE_SIZE)
compiled = pattern_cache.get
