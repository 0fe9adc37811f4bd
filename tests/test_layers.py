"""The packages' layers, each a one-line rule, checked on every import statement of the tree
(top-level and inside functions) and by importing the light ones in a clean interpreter.

- ``protocol``: the worker protocol's facts; imports nothing of ours.
- ``optim``: the optimizer; imports nothing of ours but ``optim``.
- ``service``: the server; imports ``optim`` and ``protocol``, never ``worker`` or ``lionsweep``.
- ``worker``: the agent and the HTTP client; imports ``optim`` and ``protocol``, never
  ``service`` or ``lionsweep``.
- ``lionsweep``: the user's package and the CLI that composes everything; may import any.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("protocol", "optim", "service", "worker", "lionsweep")
ALLOWED = {
    "protocol": {"protocol"},
    "optim": {"optim"},
    "service": {"service", "optim", "protocol"},
    "worker": {"worker", "optim", "protocol"},
    "lionsweep": set(OURS),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.partition(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.partition(".")[0]))
    return found


@pytest.mark.parametrize("package", OURS)
def test_each_package_imports_only_its_layers(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imports_of(path)
        if name in OURS and name not in ALLOWED[package]
    ]
    assert not wrong, "\n".join(wrong)


def test_protocol_pulls_in_neither_torch_nor_the_server() -> None:
    code = (
        "import sys, protocol, protocol.yaml_errors; "
        "print(sorted(m for m in ('torch', 'fastapi', 'sqlalchemy', 'optuna', 'yaml', 'httpx') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
