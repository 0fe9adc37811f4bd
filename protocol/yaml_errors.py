"""One-line YAML error messages, shared by the client's spec files and the server's bodies."""

from __future__ import annotations


def yaml_problem(exc: Exception) -> str:
    """``line 3, column 4: mapping values are not allowed here``: a YAML error on one line,
    with the line and column (1-based) of its problem and of what it was inside when that
    is elsewhere."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    if mark is None:
        return problem or type(exc).__name__
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, at = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and at is not None and (at.line, at.column) != (mark.line, mark.column):
        text += f" ({context} at line {at.line + 1}, column {at.column + 1})"
    return text
