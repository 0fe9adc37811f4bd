"""The rules for free-form JSON data: ``json_problem`` (which the HTTP middleware also runs on
every request body, parsed into ``JsonPairs`` so repeated keys show) and ``JsonTree``, the
field type of task params, metrics and configs, bounded in depth and size."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator

from service.schemas.common import NUL_MSG, SURROGATE_MSG, has_lone_surrogate

TREE_MAX_DEPTH = 16
"""How deep free-form data (task params, metrics, configs) may nest."""
TREE_MAX_BYTES = 64 * 1024
"""How large free-form data may be, as compact JSON."""


class JsonPairs(list):
    """A JSON object as the list of its (key, value) pairs, repeats kept (see ``json_problem``)."""


class JsonProblem(NamedTuple):
    """Where JSON data breaks a rule: the path inside it, an error type, what is wrong."""

    path: tuple[str | int, ...]
    kind: str
    msg: str


def json_problem(value: Any, max_depth: int, *, text_rules: bool = True) -> JsonProblem | None:
    """The first place where JSON-like ``value`` breaks the rules for free-form data, or None.

    Rules: containers nest at most ``max_depth`` deep, floats are finite, keys are unique
    (objects given as :class:`JsonPairs` keep their repeats), no string or key holds a lone
    surrogate (a ``\\ud800``–``\\udfff`` escape that is not half of a pair: no text can
    store or send it), and with ``text_rules`` none holds a NUL character. The walk is
    iterative, so no nesting depth can exhaust the stack.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        v, path = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            msg = "must be a finite number (not NaN, Infinity or beyond float range)"
            return JsonProblem(path, "finite_number", msg)
        if isinstance(v, str):
            if has_lone_surrogate(v):
                return JsonProblem(path, "string_unicode", SURROGATE_MSG)
            if text_rules and "\x00" in v:
                return JsonProblem(path, "string_nul", NUL_MSG)
            continue
        if isinstance(v, dict | JsonPairs):
            items: Iterator[tuple[Any, Any]] = iter(v.items() if isinstance(v, dict) else v)
        elif isinstance(v, list):
            items = enumerate(v)
        else:
            continue
        if len(path) >= max_depth:
            return JsonProblem(path, "too_deep", f"nests deeper than {max_depth} levels")
        seen: set[Any] = set()
        for k, item in items:
            if isinstance(k, str):
                if k in seen:
                    return JsonProblem(path, "duplicate_key", f"duplicate key {k!r}")
                seen.add(k)
                if has_lone_surrogate(k):
                    return JsonProblem(path, "string_unicode", f"keys {SURROGATE_MSG}")
                if text_rules and "\x00" in k:
                    return JsonProblem(path, "string_nul", f"keys {NUL_MSG}")
            stack.append((item, (*path, k)))
    return None


def _bounded_tree(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form data: at most TREE_MAX_DEPTH deep and TREE_MAX_BYTES as JSON; finite; no NUL."""
    problem = json_problem(value, TREE_MAX_DEPTH)
    if problem is not None:
        inside = "".join(f"[{p!r}]" for p in problem.path)
        raise ValueError(f"{inside} {problem.msg}".strip())
    size = len(json.dumps(value, separators=(",", ":")))
    if size > TREE_MAX_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {TREE_MAX_BYTES} are allowed")
    return value


JsonTree = Annotated[dict[str, Any], AfterValidator(_bounded_tree)]
"""Free-form JSON data (task params, metrics, configs), bounded in depth and size."""
