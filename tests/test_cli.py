"""The ``lionsweep`` CLI: one-line errors and exit codes, rules, examples, and a real server.

Commands run through the real entry point: ``CliRunner`` for the ones that need no server,
subprocesses for the embedded mode (``lionsweep up``), which starts its own server and workers.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from optim import scaling
from service.cli import DEMO_SPEC, app, error_lines
from service.schemas import SweepSpec

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(output: str) -> str:
    """The output must be exactly one ``error:`` line and no traceback."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def test_rule_for_a_width_matches_the_scaling_module() -> None:
    result = runner.invoke(app, ["rule", "--width", "768", "--alpha0", "1.11e-3"])
    assert result.exit_code == 0, result.output
    lr, wd = scaling.lr_and_decay(width=768, alpha0=1.11e-3)
    assert f"{lr:.4g}" in result.output
    assert f"{wd:.4g}" in result.output


def test_rule_from_adamw() -> None:
    result = runner.invoke(app, ["rule", "--adamw-lr", "3e-4", "--adamw-wd", "0.1"])
    assert result.exit_code == 0, result.output
    lr, wd = scaling.from_adamw(3e-4, 0.1)
    assert f"{lr:.4g}" in result.output and f"{wd:.4g}" in result.output


def test_rule_needs_a_mode_and_says_so() -> None:
    result = runner.invoke(app, ["rule"])
    assert result.exit_code == 2
    assert "--width" in one_error_line(result.output)
    bad = runner.invoke(app, ["rule", "--width", "-3"])
    assert bad.exit_code == 2
    one_error_line(bad.output)


def test_unreachable_server_is_one_line_and_exit_2() -> None:
    server = f"http://127.0.0.1:{free_port()}"
    for args in (["status"], ["status", "3"], ["best", "3"], ["rule", "--sweep", "3"]):
        result = runner.invoke(app, [*args, "--server", server])
        assert result.exit_code == 2, (args, result.output)
        assert "cannot reach the lionsweep server" in one_error_line(result.output)
    spec = ROOT / "examples" / "demo.yaml"
    result = runner.invoke(app, ["submit", str(spec), "--server", server])
    assert result.exit_code == 2
    one_error_line(result.output)


def test_unreadable_spec_files(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["submit", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "cannot read" in one_error_line(missing.output)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    result = runner.invoke(app, ["submit", str(broken)])
    assert result.exit_code == 2
    assert "not valid YAML/JSON" in one_error_line(result.output)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    result = runner.invoke(app, ["submit", str(listing)])
    assert result.exit_code == 2
    assert "mapping" in one_error_line(result.output)


def test_validation_details_become_one_line_per_field() -> None:
    detail = [
        {"loc": ["body", "space", "lr", "low"], "msg": "Value error, log range needs low > 0"},
        {"loc": ["body", "n_trials"], "msg": "Input should be greater than or equal to 1"},
    ]
    assert error_lines(detail) == [
        "space.lr.low: log range needs low > 0",
        "n_trials: Input should be greater than or equal to 1",
    ]
    assert error_lines("sweep 9 not found") == ["sweep 9 not found"]


@pytest.mark.parametrize("name", ["demo.yaml", "charlm-width.yaml"])
def test_examples_are_valid_sweep_specs(name: str) -> None:
    spec = SweepSpec.model_validate(yaml.safe_load((ROOT / "examples" / name).read_text()))
    assert spec.n_trials > 0


def test_built_in_demo_is_examples_demo_yaml() -> None:
    from_file = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    assert json.loads(json.dumps(DEMO_SPEC)) == from_file
