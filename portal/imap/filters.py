"""Filter DSL deciding which IMAP messages become tickets.

A filter is a JSON object: a condition ``{"field": ..., "<operator>": value}``
or a group ``{"all"|"any"|"none": [node, ...]}``. It reads as MyPortal's did: field names
are case-insensitive and keys the DSL does not know (``description``, notes) are ignored.
See the guide, portal/templates/imap/filter_guide.md.
"""

from __future__ import annotations

import json
import math

from .filter_regex import (
    MAX_FILTER_PATTERN_SIZE,
    MAX_PATTERN_SIZE,
    REGEX_BUDGET_SECONDS,
    RegexBudget,
    RegexBudgetExceeded,
    compiled,
    inspect_pattern,
)

HEADER_PREFIX = "headers."

FIELDS = frozenset({
    "subject", "body", "body_text", "body_html", "message_id",
    "from.address", "from.addresses", "from.domain", "from.domains", "from.raw",
    "to", "cc", "bcc", "to_domains", "cc_domains",
    "reply_to.addresses", "sender.addresses",
    "mailbox.folder", "mailbox.name",
    "is_unread", "is_read", "flags",
    "account.id", "account.name", "account.company_id",
    "has_attachments", "size",
})  # plus any "headers.<name>"

# Operator -> kind of value it takes (insertion order is used in messages).
VALUE_KINDS = {
    "equals": "scalar", "not_equals": "scalar",
    "in": "array", "not_in": "array",
    "contains": "substring", "not_contains": "substring",
    "starts_with": "string", "ends_with": "string",
    "matches": "regex", "not_matches": "regex",
    "present": "bool", "absent": "bool",
    "gt": "number", "lt": "number",
}
OPERATORS = frozenset(VALUE_KINDS)
GROUP_KEYS = ("all", "any", "none")

MAX_DEPTH = 20
MAX_NODES = 500
MAX_PATTERN_LENGTH = 500


class FilterError(ValueError):
    """Raised by evaluate() for an invalid filter; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class FilterTimeout(FilterError):
    """The message used up its regex time budget. Never a "no match": a `none` exclusion
    must not let a message through because a pattern was slow on it."""

    MESSAGE = "Filter took too long on this message (regex time budget exceeded)"

    def __init__(self):
        super().__init__([self.MESSAGE])


# --------------------------------------------------------------------------
# Validation

def field_name(field: str) -> str:
    """A field as the context spells it: case and spaces around the dots do not matter."""
    return ".".join(part.strip().lower() for part in field.split(".") if part.strip())


def validate(obj) -> list[str]:
    """Return every problem in the filter, one message each (empty when valid)."""
    if obj is None or obj == {}:
        return []
    if not isinstance(obj, dict):
        return [f"The filter must be a JSON object, got {_type_name(obj)}"]
    errors: list[tuple[str, str]] = []
    budget = [MAX_NODES]
    _check_node(obj, "", 1, errors, budget)
    if budget[0] < 0:
        errors.append(("", f"filter has too many conditions and groups (the limit is {MAX_NODES})"))
    elif not errors:
        total = sum(inspect_pattern(pattern)[0] for pattern in _patterns(obj))
        if total > MAX_FILTER_PATTERN_SIZE:
            errors.append(("", f"the filter's regular expressions are too large together (about {total:,} "
                               f"steps; the limit is {MAX_FILTER_PATTERN_SIZE:,})"))
    return [_at(path, msg) for path, msg in errors]


def _patterns(node):
    """Every regex pattern of a valid filter."""
    if "field" in node:
        yield from (node[op] for op in node if VALUE_KINDS.get(op) == "regex")
        return
    for key in GROUP_KEYS:
        for child in node.get(key, ()):
            yield from _patterns(child)


def _at(path: str, msg: str) -> str:
    return f"{path}: {msg}" if path else msg[0].upper() + msg[1:]


def _check_node(node, path, depth, errors, budget):
    budget[0] -= 1
    if budget[0] < 0:
        return  # reported once by validate(); stop walking huge filters
    if not isinstance(node, dict):
        errors.append((path, f"expected an object (a condition or a group), got {_type_name(node)}"))
        return
    if depth > MAX_DEPTH:
        errors.append((path, f"filter is nested too deeply (the limit is {MAX_DEPTH} levels)"))
        return
    groups = [k for k in GROUP_KEYS if k in node]
    if "field" in node and groups:
        errors.append((path, "a node cannot mix 'field' with group keys ("
                       + ", ".join(f"'{k}'" for k in groups) + ")"))
        return
    if groups:  # other keys (a description, a note) are ignored, as MyPortal ignored them
        for key in groups:
            children = node[key]
            if not isinstance(children, list):
                errors.append((path, f"'{key}' must be an array"))
                continue
            for i, child in enumerate(children):
                child_path = f"{path}.{key}[{i}]" if path else f"{key}[{i}]"
                _check_node(child, child_path, depth + 1, errors, budget)
        return
    if not node:
        errors.append((path, "empty node: expected a condition ('field' and an operator) "
                             "or a group ('all', 'any', 'none')"))
        return
    _check_condition(node, path, errors)


def _check_condition(node, path, errors):
    field = node.get("field")
    if "field" not in node:
        errors.append((path, "missing 'field'"))
    elif not isinstance(field, str):
        errors.append((path, "'field' must be a string"))
    elif not _known_field(field):
        errors.append((path, f"unknown field '{field}'"))

    if node.get("case_sensitive") is not None and not isinstance(node["case_sensitive"], bool):
        errors.append((path, "'case_sensitive' must be true or false"))

    ops = [k for k in node if k in OPERATORS]
    if len(ops) > 1:
        errors.append((path, "several operators (" + ", ".join(f"'{k}'" for k in ops)
                       + "): a condition takes exactly one; combine conditions with 'all'"))
    elif not ops:
        # Other keys are notes (ignored) next to an operator; without one, they are its typo.
        unknown = [k for k in node if k not in ("field", "case_sensitive")]
        for key in unknown:
            errors.append((path, f"unknown operator '{key}'"))
        if not unknown:
            errors.append((path, "missing operator: add one of " + ", ".join(VALUE_KINDS)))
    for op in ops:
        msg = _check_value(op, node[op])
        if msg:
            errors.append((path, msg))


def _known_field(field: str) -> bool:
    name = field_name(field)
    return name in FIELDS or (name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX))


def _check_value(op, value):
    kind = VALUE_KINDS[op]
    if kind == "scalar" and not _is_scalar(value):
        return f"operator '{op}' expects a string, number or boolean"
    if kind == "array" and not (isinstance(value, list) and all(_is_scalar(v) for v in value)):
        return f"operator '{op}' expects an array of values"
    if kind == "number" and not _is_number(value):
        return f"operator '{op}' expects a number"
    if kind == "bool" and not (value is None or isinstance(value, bool)):  # null: true, as in MyPortal
        return f"operator '{op}' expects true or false"
    if kind == "substring" and not _is_scalar(value):
        return f"operator '{op}' expects a string (a number or boolean is compared whole)"
    if kind in ("string", "regex") and not isinstance(value, str):
        return f"operator '{op}' expects a string"
    if kind == "regex":
        if len(value) > MAX_PATTERN_LENGTH:
            return (f"operator '{op}' pattern is too long ({len(value)} characters; "
                    f"the limit is {MAX_PATTERN_LENGTH})")
        size, problem = inspect_pattern(value)
        if problem:
            return f"operator '{op}' has an invalid regular expression: {problem}"
        if size > MAX_PATTERN_SIZE:
            return (f"operator '{op}' pattern is too large: its repeats expand to about {size:,} steps "
                    f"(the limit is {MAX_PATTERN_SIZE:,}); counted repeats nested in each other multiply, "
                    "as in (?:a{100}){100}")
    return None


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_scalar(value) -> bool:
    return isinstance(value, (str, bool)) or _is_number(value)


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


# --------------------------------------------------------------------------
# Parsing form input

def _reject_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


class _DuplicateKey(Exception):
    pass


def parse_filter_text(text: str) -> tuple[object | None, list[str]]:
    """Parse filter JSON from a form field: (filter or None, error messages)."""
    if text is None or not text.strip():
        return None, []
    try:
        obj = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        return None, [f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
    except _DuplicateKey as exc:
        return None, [f"Invalid JSON: duplicate key '{exc.args[0]}' in an object"]
    except RecursionError:
        return None, ["Invalid JSON: nested too deeply"]
    return obj, validate(obj)


# --------------------------------------------------------------------------
# Evaluation

def evaluate(filter, context: dict) -> bool:
    """True when the message described by ``context`` passes the filter.

    A null/empty filter passes everything. Raises FilterError if the filter is invalid, and
    FilterTimeout when its regular expressions use up REGEX_BUDGET_SECONDS on this message.
    """
    errors = validate(filter)
    if errors:
        raise FilterError(errors)
    if not filter:
        return True
    try:
        return _eval(filter, context, RegexBudget(REGEX_BUDGET_SECONDS))
    except RegexBudgetExceeded:
        raise FilterTimeout() from None


def why_rejected(filter, context: dict) -> str:
    """Which part of a (valid) filter turned the message down, said for a person: the path
    and the condition, e.g. ``none[0] matched: {"field": "headers.list-id", "present": true}``."""
    try:
        return _why_not(filter, context, RegexBudget(REGEX_BUDGET_SECONDS), "")
    except RegexBudgetExceeded:
        return FilterTimeout.MESSAGE


def _why_not(node, ctx, budget: RegexBudget, path: str) -> str:
    if "field" in node:
        return f"{path or 'The filter'} did not match: {_shown(node)}"
    for key in GROUP_KEYS:
        children = node.get(key)
        if children is None:
            continue
        at = f"{path}.{key}" if path else key
        if key == "all":
            for i, child in enumerate(children):
                if not _eval(child, ctx, budget):
                    return _why_not(child, ctx, budget, f"{at}[{i}]")
        elif key == "any" and not any(_eval(child, ctx, budget) for child in children):
            return f"{at}: none of its {len(children)} entries matched"
        elif key == "none":
            for i, child in enumerate(children):
                if _eval(child, ctx, budget):
                    return f"{at}[{i}] matched: {_shown(child)}"
    return "The filter did not match"


def _shown(node, limit: int = 300) -> str:
    """A node as compact JSON, without its notes (keys the DSL ignores)."""
    if "field" in node:
        node = {k: v for k, v in node.items() if k in OPERATORS or k in ("field", "case_sensitive")}
    else:
        node = {k: v for k, v in node.items() if k in GROUP_KEYS}
    text = json.dumps(node, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _eval(node, ctx, budget: RegexBudget) -> bool:
    if "field" not in node:
        # Each group key present must pass.
        if "all" in node and not all(_eval(c, ctx, budget) for c in node["all"]):
            return False
        if "any" in node and not any(_eval(c, ctx, budget) for c in node["any"]):
            return False
        if "none" in node and any(_eval(c, ctx, budget) for c in node["none"]):
            return False
        return True

    value = resolve(ctx, node["field"])
    op = next(k for k in node if k in OPERATORS)
    expected = node[op]
    cs = bool(node.get("case_sensitive"))

    if op in ("present", "absent"):
        wanted = expected is not False  # null means true, as in MyPortal
        return _is_present(value) == (wanted if op == "present" else not wanted)

    items = value if isinstance(value, list) else [] if value is None else [value]
    negated = op.startswith("not_")
    positive = op[4:] if negated else op
    if positive == "matches":
        pattern = compiled(expected, cs)
        hit = any(text is not None and budget.search(pattern, text) for text in map(_text, items))
    else:
        test = _TESTS[positive]
        hit = any(test(item, expected, cs) for item in items)
    return not hit if negated else hit


def resolve(ctx: dict, field: str):
    """Value of a dotted field path in the context (any case); None when the path does not exist."""
    field = field_name(field)
    if field.startswith(HEADER_PREFIX):
        headers = ctx.get("headers")
        return headers.get(field[len(HEADER_PREFIX):]) if isinstance(headers, dict) else None
    value = ctx
    for part in field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _is_present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):
        return any(_is_present(v) for v in value)
    return True


def _text(value):
    """String form of a context value for string operators (numbers included, booleans not)."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(value)
    return None


def _number(value):
    if _is_number(value):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _fold(s: str, cs: bool) -> str:
    return s if cs else s.casefold()


def _equals(actual, expected, cs) -> bool:
    if isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, bool):
        return False
    if _is_number(expected):
        return _number(actual) == expected
    text = _text(actual)
    return text is not None and _fold(text, cs) == _fold(expected, cs)


def _string_test(method):
    def test(actual, expected, cs):
        if not isinstance(expected, str):  # contains 5 / contains true: MyPortal compared them whole
            return _equals(actual, expected, cs)
        text = _text(actual)
        return text is not None and getattr(_fold(text, cs), method)(_fold(expected, cs))
    return test


def _compare(sign):
    def test(actual, expected, cs):
        number = None if isinstance(actual, bool) else _number(actual)
        return number is not None and (number - expected) * sign > 0
    return test


_TESTS = {
    "equals": _equals,
    "in": lambda actual, values, cs: any(_equals(actual, v, cs) for v in values),
    "contains": _string_test("__contains__"),
    "starts_with": _string_test("startswith"),
    "ends_with": _string_test("endswith"),
    "gt": _compare(1),
    "lt": _compare(-1),
}
