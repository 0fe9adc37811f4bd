"""docker-compose.yml, Dockerfile and .env.example for a GPU node, checked without a Docker engine.

``docker-compose config`` (Debian's docker-compose v1) validates and interpolates the file
offline; each service's command is run through the real ``lionsweep`` CLI with ``--help``
appended, which fails on an unknown command or option. The same goes for
bench/compose/override.yml, the host-network, CPU-only variant that bench/compose_check.sh runs
for real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lionsweep.cli import app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
OVERRIDE = ROOT / "bench" / "compose" / "override.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")
IN_CI = os.environ.get("CI", "").lower() == "true"


def compose_config(
    tmp_path: Path, env: dict[str, str], override: bool = False
) -> subprocess.CompletedProcess:
    """Run ``docker-compose config`` on a copy of the file (with ``override``, merged with
    bench/compose/override.yml), isolated from any local .env."""
    if DOCKER_COMPOSE is None:
        if IN_CI:
            pytest.fail("docker-compose is not installed (apt-get install -y docker-compose)")
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    files = ["-f", "docker-compose.yml"]
    if override:
        shutil.copy(OVERRIDE, tmp_path / "override.yml")
        files += ["-f", "override.yml"]
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LIONSWEEP_", "POSTGRES_", "CHECK_"))
    }
    return subprocess.run(
        [DOCKER_COMPOSE, "--no-ansi", *files, "config"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_config_is_valid_and_reserves_gpus(tmp_path: Path) -> None:
    done = compose_config(tmp_path, {"LIONSWEEP_TOKEN": "s3cret", "POSTGRES_PASSWORD": "pw"})
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "api", "worker"}

    postgres = services["postgres"]
    assert any("pgdata:/var/lib/postgresql/data" in str(v) for v in postgres["volumes"])
    assert "pgdata" in config["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    api = services["api"]
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = api["environment"]
    assert env["LIONSWEEP_DATABASE_URL"] == (
        "postgresql+psycopg://lionsweep:pw@postgres:5432/lionsweep"
    )
    assert env["LIONSWEEP_BOOTSTRAP_TOKEN"] == "s3cret"
    assert any("8000" in str(p) for p in api["ports"])

    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert devices[0]["count"] == "all"
    assert worker["environment"]["LIONSWEEP_TOKEN"] == "s3cret"
    assert worker["environment"]["LIONSWEEP_SERVER"] == "http://api:8000"
    assert worker["command"][:3] == ["worker", "--gpus", "all"]


def test_check_override_puts_every_service_on_the_host_network_and_one_cpu_worker(
    tmp_path: Path,
) -> None:
    env = {"LIONSWEEP_TOKEN": "s3cret", "POSTGRES_PASSWORD": "pw", "CHECK_API_PORT": "18001"}
    done = compose_config(tmp_path, env, override=True)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"postgres", "api", "worker", "cpu-worker"}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
    # docker-compose v1 refuses published ports on the host network and an override cannot
    # remove them: bench/compose_check.sh drops `ports:` from the merged config, the api's only.
    assert [name for name, service in services.items() if "ports" in service] == ["api"]

    postgres = services["postgres"]
    assert postgres["image"] == "lionsweep-postgres:check"
    assert postgres["environment"]["PGPORT"] == "55432"
    assert '-p "$${PGPORT}"' in " ".join(postgres["healthcheck"]["test"])

    api = services["api"]
    assert api["environment"]["LIONSWEEP_DATABASE_URL"] == (
        "postgresql+psycopg://lionsweep:pw@127.0.0.1:55432/lionsweep"
    )
    assert api["command"] == ["serve", "--host", "127.0.0.1", "--port", "18001"]
    assert "http://127.0.0.1:18001/healthz" in " ".join(api["healthcheck"]["test"])

    cpu = services["cpu-worker"]
    assert "deploy" not in cpu  # no GPU reservation
    assert cpu["image"] == "lionsweep:latest"
    assert cpu["command"] == ["worker", "--device", "cpu"]
    assert cpu["depends_on"]["api"]["condition"] == "service_healthy"
    assert cpu["environment"] == {
        "LIONSWEEP_SERVER": "http://127.0.0.1:18001",
        "LIONSWEEP_TOKEN": "s3cret",
        "OMP_NUM_THREADS": "1",
    }
    result = CliRunner().invoke(app, [*cpu["command"], "--help"])
    assert result.exit_code == 0, result.output


def test_compose_refuses_to_run_without_a_token(tmp_path: Path) -> None:
    done = compose_config(tmp_path, {})
    assert done.returncode != 0
    assert "LIONSWEEP_TOKEN" in done.stderr


def commands() -> dict[str, list[str]]:
    """Each lionsweep service's command (docker-compose.yml) plus the Dockerfile's default."""
    spec = yaml.safe_load(COMPOSE.read_text())
    found = {
        name: list(service["command"])
        for name, service in spec["services"].items()
        if service.get("image", "").startswith("lionsweep") or "build" in service
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None
    found["Dockerfile CMD"] = yaml.safe_load(cmd.group(1))
    return found


@pytest.mark.parametrize("name", ["api", "worker", "Dockerfile CMD"])
def test_every_service_command_exists_in_the_cli(name: str) -> None:
    command = commands()[name]
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"`lionsweep {' '.join(command)}`: {result.output}"
    assert "Usage:" in result.output


def test_dockerfile_uses_official_pytorch_runtime_and_keeps_the_source_tree() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # The base is a build argument (bench/compose_check.sh builds on a CPU-only Debian base);
    # its default is the official PyTorch CUDA runtime image.
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert default is not None, "no `ARG BASE_IMAGE=...` line"
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda12\.\d+-cudnn9-runtime", default.group(1))
    froms = re.findall(r"^FROM (.+)$", text, re.M)
    assert froms == ["${BASE_IMAGE}"], froms
    assert text.index("ARG BASE_IMAGE=") < text.index("FROM ${BASE_IMAGE}")
    assert re.search(r'^ENTRYPOINT \["lionsweep"\]$', text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for line in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / line).exists(), f"COPY {line}: not in the repository"
        assert line not in ignored, f"COPY {line}: excluded by .dockerignore"
    # Every package the wheel ships is copied in, and stubbed in the dependency layer.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    assert "protocol" in packages
    for needed in packages:
        assert re.search(rf"^COPY {needed}\b", text, re.M), f"{needed} is not copied"
        assert f"{needed}/__init__.py" in text, f"{needed} is not stubbed before pip install"
    assert "pip install '.[server]'" in text  # the api service needs the server extra


def test_env_example_names_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*(LIONSWEEP_[A-Z_]+)=", text, re.M))
    for field in Settings.model_fields:
        assert f"LIONSWEEP_{field.upper()}" in named, f"LIONSWEEP_{field.upper()} missing"
    api_env = yaml.safe_load(COMPOSE.read_text())["services"]["api"]["environment"]
    known = {f"LIONSWEEP_{f.upper()}" for f in Settings.model_fields}
    assert set(api_env) <= known, set(api_env) - known
