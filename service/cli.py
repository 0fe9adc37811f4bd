"""The ``lionsweep`` command line (Typer + rich).

Commands that talk to a running server (``submit``, ``status``, ``best``, ``rule --sweep``)
go through :class:`worker.client.Client` and turn its errors into one clear line and a
non-zero exit code: 1 for an answer the server refused, 2 for a server that cannot be reached
or an unreadable input file. Commands that open the database (``serve``, ``db upgrade``,
``token create``) likewise exit 2 with one line for a malformed ``LIONSWEEP_*`` setting or a
database that cannot be opened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from service.settings import Settings
    from worker.client import Client

DEFAULT_SERVER = "http://127.0.0.1:8000"
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="lionsweep",
    help="Hyperparameter sweeps for the Lion optimizer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")


def load_settings() -> Settings:
    """The service settings from the environment; a malformed ``LIONSWEEP_*`` exits 2.

    Each problem is one line naming the variable and the rule it breaks (never its value,
    which may be a password or a token).
    """
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"LIONSWEEP_{'_'.join(str(p) for p in e['loc']).upper()}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        ]
    for line in problems[:-1]:
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    raise fail(problems[-1], EXIT_UNREACHABLE)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn a database that cannot be opened (missing directory, refused connection, bad URL)
    into one line and exit 2, never a traceback."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        yield
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        hint = " (does its directory exist?)" if isinstance(exc, FileNotFoundError) else ""
        raise fail(
            f"cannot open the database: {exc.strerror or exc}{where}{hint}", EXIT_UNREACHABLE
        ) from None
    except (OperationalError, ArgumentError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise fail(
            f"cannot open the database: {first[0] if first else type(exc).__name__}",
            EXIT_UNREACHABLE,
        ) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the API server (migrates the database first)."""
    from service.app import serve as serve_app

    settings = load_settings()
    with database_errors():
        serve_app(settings, host=host, port=port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations (alembic upgrade head)."""
    from service.db import upgrade

    settings = load_settings()
    with database_errors():
        upgrade(settings)


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str], typer.Option("--scope", help="submit, worker or read; repeat for several.")
    ],
    name: Annotated[str | None, typer.Option(help="A label for the token.")] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from service.auth import create_token

    settings = load_settings()
    with database_errors():
        try:
            secret = create_token(settings, scopes=scope, name=name)
        except ValueError as exc:
            raise fail(str(exc), EXIT_UNREACHABLE) from None
    typer.echo(secret)


@app.command()
def worker(
    server: Annotated[
        str, typer.Option(envvar="LIONSWEEP_SERVER", help="API base URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option(envvar="LIONSWEEP_TOKEN", help="Bearer token (worker scope).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda:N.")] = "auto",
    gpus: Annotated[
        str | None, typer.Option(help="'all' or '0,1,…': one supervised agent per GPU.")
    ] = None,
    max_trials: Annotated[int | None, typer.Option(help="Exit after this many trials.")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds with nothing to run.")
    ] = None,
    task_module: Annotated[
        list[str] | None,
        typer.Option("--task-module", help="Import this module to register its tasks."),
    ] = None,
) -> None:
    """Run a worker agent: claim trials, train, report, finish."""
    from worker.agent import main as worker_main

    raise typer.Exit(
        worker_main(
            server=server,
            token=token,
            device=device,
            gpus=gpus,
            max_trials=max_trials,
            idle_exit=idle_exit,
            task_modules=task_module or [],
        )
    )


# -- talking to a server ---------------------------------------------------------------------

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="LIONSWEEP_SERVER", help="API base URL.")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="LIONSWEEP_TOKEN", help="Bearer token.")
]


def fail(message: str, code: int = EXIT_REFUSED) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def error_lines(detail: Any) -> list[str]:
    """One line per problem of an API error detail (FastAPI 422 lists become ``field: rule``)."""
    if isinstance(detail, list) and detail:
        lines = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
                msg = str(item["msg"]).removeprefix("Value error, ")
                lines.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
            else:
                lines.append(str(item))
        return lines
    if isinstance(detail, str):
        return [detail]
    return [json.dumps(detail)]


def make_client(server: str, token: str | None) -> Client:
    """An API client that gives up quickly when the server is down (a person is waiting)."""
    import logging

    from worker.client import Client

    logging.getLogger("worker.client").setLevel(logging.ERROR)  # no per-retry warnings here

    return Client(server, token, attempts=3, deadline=5.0)


@contextmanager
def api_errors(server: str) -> Iterator[None]:
    """Turn the client's errors into one-line messages and exit codes (never a traceback)."""
    from worker.client import ApiError, ServerUnreachable

    try:
        yield
    except ServerUnreachable:
        raise fail(
            f"cannot reach the lionsweep server at {server} "
            "(start one with `lionsweep up` or `lionsweep serve`, or pass --server)",
            EXIT_UNREACHABLE,
        ) from None
    except ApiError as exc:
        lines = error_lines(exc.detail)
        for line in lines[:-1]:
            err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        raise fail(lines[-1] if lines else f"HTTP {exc.status_code}") from None


def fmt(value: Any) -> str:
    """A number with 4 significant digits, or ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def load_spec(path: Path) -> dict[str, Any]:
    """Read a sweep spec from a YAML or JSON file (exit 2 with one line when unreadable)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_UNREACHABLE) from None
    try:
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(f"{path} is not valid YAML/JSON: {first}", EXIT_UNREACHABLE) from None
    if not isinstance(spec, dict):
        raise fail(f"{path}: a sweep spec must be a mapping (name, task, space, …)", 2)
    return spec


# -- submit / status / best -------------------------------------------------------------------


def counts_text(sweep: dict[str, Any]) -> str:
    """``12 complete · 3 pruned · 0 failed · 2 running`` for one sweep."""
    counts = sweep.get("counts") or {}
    parts = ("complete", "pruned", "failed", "running")
    return " · ".join(f"{counts.get(k, 0)} {k}" for k in parts)


def follow_sweep(client: Client, sweep_id: int, interval: float = 1.0) -> dict[str, Any]:
    """Show a rich progress bar until the sweep stops running; return its last state."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    sweep = client.get(f"/api/sweeps/{sweep_id}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(sweep["name"], total=sweep["n_trials"], counts="", best="-")
        while True:
            best = (sweep.get("best") or {}).get("value")
            progress.update(
                task,
                completed=sweep.get("finished", 0),
                total=sweep["n_trials"],
                counts=counts_text(sweep),
                best=fmt(best),
            )
            if sweep["status"] != "running":
                break
            time.sleep(interval)
            sweep = client.get(f"/api/sweeps/{sweep_id}")
    return sweep


def print_best(answer: dict[str, Any]) -> None:
    """Print the top configs as a table and the best one's optimizer kwargs as JSON."""
    table = Table(title="Best configs", title_justify="left")
    for column in ("rank", "trial", "value", "optimizer", "lr", "weight_decay", "betas"):
        table.add_column(column, justify="right" if column != "optimizer" else "left")
    table.add_column("warmup", justify="right")
    table.add_column("batch", justify="right")
    top = answer.get("top") or [answer["best"]]
    for rank, cfg in enumerate(top, start=1):
        kw = cfg.get("optimizer_kwargs") or {}
        betas = ", ".join(fmt(b) for b in kw.get("betas", []))
        table.add_row(
            str(rank),
            str(cfg.get("trial_number")),
            fmt(cfg.get("value")),
            cfg.get("optimizer", "lion"),
            fmt(kw.get("lr")),
            fmt(kw.get("weight_decay")),
            f"({betas})",
            fmt(cfg.get("warmup_steps")),
            fmt(cfg.get("batch_size")),
        )
    console.print(table)
    best = answer["best"]
    cls = "torch.optim.AdamW" if best.get("optimizer") == "adamw" else "optim.Lion"
    console.print(f"best optimizer kwargs ({cls}):", highlight=False)
    console.print(json.dumps(best.get("optimizer_kwargs")), highlight=False, soft_wrap=True)


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(help="Sweep spec, YAML or JSON.", metavar="FILE")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show progress until the sweep ends.")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting twice with the same key creates one sweep.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between progress polls.")] = 1.0,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Submit a sweep (and with --follow, watch it and print the best config)."""
    spec = load_spec(spec_file)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with api_errors(server), make_client(server, token) as client:
        sweep = client.post("/api/sweeps", json=spec, headers=headers)
        console.print(
            f"Submitted sweep [bold]{sweep['id']}[/] ({sweep['name']}, {sweep['n_trials']} "
            f"trials): {server.rstrip('/')}/sweeps/{sweep['id']}",
            highlight=False,
        )
        for warning in sweep.get("warnings") or []:
            err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if not follow:
            return
        try:
            sweep = follow_sweep(client, sweep["id"], interval)
        except KeyboardInterrupt:
            console.print("stopped following; the sweep goes on")
            return
        console.print(f"sweep {sweep['id']} {sweep['status']}: {counts_text(sweep)}")
        from worker.client import ApiError

        try:
            print_best(client.get(f"/api/sweeps/{sweep['id']}/best", params={"k": 5}))
        except ApiError as exc:
            if exc.status_code != 409:
                raise
            raise fail("no trial completed: " + " ".join(error_lines(exc.detail))) from None


@app.command()
def status(
    sweep_id: Annotated[int | None, typer.Argument(help="A sweep id; omit to list sweeps.")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """List sweeps, or show one sweep's progress."""
    with api_errors(server), make_client(server, token) as client:
        if sweep_id is None:
            page = client.get("/api/sweeps", params={"limit": 100})
            table = Table(title=f"Sweeps ({page['total']})", title_justify="left")
            table.add_column("id", justify="right")
            table.add_column("name", no_wrap=True)
            table.add_column("task", no_wrap=True)
            table.add_column("status")
            table.add_column("finished", justify="right")
            table.add_column("complete/pruned/failed/running", justify="right")
            table.add_column("best", justify="right")
            for sweep in page["items"]:
                c = sweep.get("counts") or {}
                table.add_row(
                    str(sweep["id"]),
                    sweep["name"],
                    (sweep.get("task") or {}).get("name", "-"),
                    sweep["status"],
                    f"{sweep.get('finished', 0)}/{sweep['n_trials']}",
                    "/".join(str(c.get(k, 0)) for k in ("complete", "pruned", "failed", "running")),
                    fmt((sweep.get("best") or {}).get("value")),
                )
            console.print(table)
            return
        sweep = client.get(f"/api/sweeps/{sweep_id}")
    table = Table(title=f"Sweep {sweep['id']}: {sweep['name']}", title_justify="left")
    table.add_column("field")
    table.add_column("value")
    best = sweep.get("best") or {}
    eta = sweep.get("eta_seconds")
    rows = [
        ("status", sweep["status"]),
        ("task", (sweep.get("task") or {}).get("name", "-")),
        ("progress", f"{sweep.get('finished', 0)}/{sweep['n_trials']}"),
        *((k, str(v)) for k, v in (sweep.get("counts") or {}).items()),
        ("best value", fmt(best.get("value"))),
        ("best trial", fmt(best.get("trial_number"))),
        ("eta", "-" if eta is None else f"{eta:.0f} s"),
        ("created", str(sweep.get("created_at", "-"))),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    for warning in sweep.get("warnings") or []:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command()
def best(
    sweep_id: Annotated[int, typer.Argument(help="The sweep id.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many top configs.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Print a sweep's best configs (ready-to-use optimizer kwargs)."""
    with api_errors(server), make_client(server, token) as client:
        answer = client.get(f"/api/sweeps/{sweep_id}/best", params={"k": k})
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
    else:
        print_best(answer)


# -- the scaling rule ------------------------------------------------------------------------


def rule_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table of a rule's numbers."""
    table = Table(title=title, title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, fmt(value))
    return table


@app.command()
def rule(
    width: Annotated[float | None, typer.Option(help="Model width (σ = width^-1/2).")] = None,
    sigma: Annotated[float | None, typer.Option(help="Init scale σ (instead of --width).")] = None,
    alpha0: Annotated[
        float | None, typer.Option("--alpha0", help="α0 of η = α0·σ, λ = α0/(2σ).")
    ] = None,
    adamw_lr: Annotated[float | None, typer.Option(help="Convert an AdamW lr …")] = None,
    adamw_wd: Annotated[float | None, typer.Option(help="… and its weight decay to Lion.")] = None,
    factor: Annotated[float, typer.Option(help="AdamW→Lion lr divisor / wd multiplier.")] = 3.0,
    sweep: Annotated[
        int | None, typer.Option("--sweep", help="Fit η vs λ over this sweep's trials.")
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Lion's lr and weight decay for a width (η = α0·σ, λ = α0/2σ), from AdamW, or a sweep."""
    from optim import scaling

    if sweep is not None:
        with api_errors(server), make_client(server, token) as client:
            fit = client.get(f"/api/sweeps/{sweep}/scaling-rule")
        console.print(rule_table(f"Fitted rule of sweep {sweep}: log λ = a + b·log η", fit))
        if width is not None or sigma is not None:
            lr, wd = scaling.lr_and_decay(sigma=sigma, width=width, alpha0=fit["alpha0"])
            console.print(
                rule_table(
                    f"Transferred with α0 = {fit['alpha0']:.4g}",
                    {"width": width, "sigma": sigma, "lr": lr, "weight_decay": wd},
                )
            )
        return
    if adamw_lr is not None or adamw_wd is not None:
        if adamw_lr is None or adamw_wd is None:
            raise fail("--adamw-lr and --adamw-wd go together", 2)
        try:
            lr, wd = scaling.from_adamw(adamw_lr, adamw_wd, factor=factor)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        rows = {"adamw lr": adamw_lr, "adamw weight_decay": adamw_wd, "factor": factor}
        console.print(
            rule_table("Lion from AdamW", {**rows, "lr": lr, "weight_decay": wd, "η·λ": lr * wd})
        )
        return
    if width is None and sigma is None:
        raise fail("give --width or --sigma (with --alpha0), --adamw-lr/--adamw-wd, or --sweep", 2)
    try:
        lr, wd = scaling.lr_and_decay(sigma=sigma, width=width, alpha0=alpha0 or 1e-3)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    s = sigma if sigma is not None else float(width) ** -0.5
    rows = {"width": width, "sigma": s, "alpha0": alpha0 or 1e-3, "lr": lr, "weight_decay": wd}
    console.print(rule_table("Lion lr and weight decay", {**rows, "η·λ": lr * wd}))


# -- bench ----------------------------------------------------------------------------------


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run bench/optim_step.py (Lion step timings); extra arguments are passed through."""
    script = Path(__file__).resolve().parent.parent / "bench" / "optim_step.py"
    if not script.is_file():
        raise fail(f"{script} not found: benchmarks need the source tree (git checkout)", 2)
    code = subprocess.call([sys.executable, str(script), *ctx.args], cwd=script.parent.parent)
    raise typer.Exit(code)


# -- up: the embedded mode -------------------------------------------------------------------

DEMO_SPEC: dict[str, Any] = {
    "name": "demo",
    "task": {"name": "quadratic", "params": {}},
    "space": {
        "lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "weight_decay": {"low": 1e-3, "high": 3.0, "log": True},
        "beta1": 0.9,
        "beta2": {"choices": [0.98, 0.99]},
    },
    "objective": {"metric": "val_loss", "direction": "minimize"},
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "median", "n_startup_trials": 10, "n_warmup_steps": 500},
    "n_trials": 60,
    "max_retries": 1,
    "enqueue": [{"lr": 1e-3, "weight_decay": 0.1}],
    "budget": {"max_steps": None},
}
DEMO_KEY = "lionsweep-up-demo"


def gpu_count() -> int:
    """Visible NVIDIA GPUs (CUDA_VISIBLE_DEVICES, else ``nvidia-smi -L``); 0 without any."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def worker_devices(workers: int | None) -> list[str]:
    """Devices of the local workers: one per GPU (cuda:i), else ``workers`` on the CPU."""
    gpus = gpu_count()
    if gpus:
        return [f"cuda:{i % gpus}" for i in range(gpus if workers is None else workers)]
    return ["cpu"] * (1 if workers is None else workers)


def wait_healthy(
    url: str, server: subprocess.Popen, stopping: list[int], timeout: float = 120.0
) -> bool:
    """Wait until ``url``/healthz answers; False when the server died or a stop was asked."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None or stopping:
            return False
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def port_in_use(host: str, port: int) -> bool:
    """Whether something already accepts connections on ``host:port``."""
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 3) -> str:
    """The last few non-empty lines of a log file, joined by `` | ``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join([line for line in text.splitlines() if line.strip()][-lines:])


def ensure_demo(client: Client) -> dict[str, Any]:
    """The demo sweep: the existing one (resumed), else a newly submitted one."""
    page = client.get("/api/sweeps", params={"limit": 100})
    for sweep in page["items"]:
        if sweep["name"] == DEMO_SPEC["name"] and sweep["task"]["name"] == "quadratic":
            return sweep
    return client.post("/api/sweeps", json=DEMO_SPEC, headers={"Idempotency-Key": DEMO_KEY})


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    """SIGINT a child and wait ``grace`` seconds, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo", help="Also run a built-in demo sweep.")] = False,
    port: Annotated[int, typer.Option(help="Port of the server.")] = 8000,
    host: Annotated[str, typer.Option(help="Bind address (loopback: no token needed).")] = (
        "127.0.0.1"
    ),
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=0, help="Local workers (default: per GPU, else 1)."),
    ] = None,
    db: Annotated[Path, typer.Option(help="SQLite file (kept between runs).")] = Path(
        "lionsweep.db"
    ),
    token: TokenOpt = None,
) -> None:
    """Run everything on this machine: SQLite, the server and local workers (Ctrl-C stops)."""
    db = db.resolve()
    probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if port_in_use(probe, port):
        raise fail(f"port {port} is already in use (another `lionsweep up`?); pick --port", 1)
    logs = db.parent / ".lionsweep-logs"
    logs.mkdir(parents=True, exist_ok=True)
    url = f"http://{probe}:{port}"
    env = {**os.environ, "LIONSWEEP_DATABASE_URL": f"sqlite:///{db}", "PYTHONUNBUFFERED": "1"}
    if token:
        env["LIONSWEEP_TOKEN"] = token
    cli = [sys.executable, "-m", "service.cli"]
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[subprocess.Popen] = []

    def spawn(args: list[str], log_name: str) -> subprocess.Popen:
        out = open(logs / log_name, "ab")  # noqa: SIM115 (lives as long as the child)
        proc = subprocess.Popen(
            cli + args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        children.append(proc)
        return proc

    try:
        server = spawn(["serve", "--host", host, "--port", str(port)], "server.log")
        console.print(f"lionsweep: database {db}; logs in {logs}", highlight=False)
        if not wait_healthy(url, server, stopping):
            if stopping:
                raise typer.Exit(0)
            raise fail(f"the server did not start: {log_tail(logs / 'server.log', 1)}", 1)
        sweep = None
        if demo:
            with api_errors(url), make_client(url, token) as client:
                sweep = ensure_demo(client)
        devices = worker_devices(workers)
        for i, device in enumerate(devices):
            spawn(["worker", "--server", url, "--device", device], f"worker-{i}.log")
        console.print(f"[bold green]Dashboard:[/] {url}/", highlight=False)
        if sweep is not None:
            console.print(f"Demo sweep {sweep['id']}: {url}/sweeps/{sweep['id']}", highlight=False)
        described = ", ".join(devices) if devices else "none"
        console.print(f"{len(devices)} worker(s): {described}. Press Ctrl-C to stop.")
        watch(url, token, server, children[1:], sweep, stopping)
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for proc in children[1:]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in children[1:]:
            stop_process(proc, grace=30.0)
        if children:
            stop_process(children[0], grace=15.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped. Run `lionsweep up` again to carry on where it stopped.")


def watch(
    url: str,
    token: str | None,
    server: subprocess.Popen,
    workers: list[subprocess.Popen],
    sweep: dict[str, Any] | None,
    stopping: list[int],
    report: Callable[[str], None] | None = None,
) -> None:
    """Wait for a stop signal, printing the demo sweep's progress when it changes."""
    from worker.client import ApiError, ServerUnreachable

    if report is None:

        def report(line: str) -> None:
            console.print(line, highlight=False, soft_wrap=True)

    last = ""
    reported_dead: set[int] = set()
    next_poll = 0.0
    with make_client(url, token) as client:
        while not stopping:
            if server.poll() is not None:
                raise fail(f"the server exited (code {server.returncode}); see its log", 1)
            for i, proc in enumerate(workers):
                if proc.poll() is not None and i not in reported_dead:
                    reported_dead.add(i)
                    report(f"worker {i} exited with code {proc.returncode}; see its log")
            if sweep is not None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 3.0
                try:
                    current = client.get(f"/api/sweeps/{sweep['id']}")
                except (ApiError, ServerUnreachable):
                    current = None
                if current is not None:
                    best = (current.get("best") or {}).get("value")
                    line = (
                        f"{current['name']}: {current.get('finished', 0)}/{current['n_trials']} "
                        f"finished ({counts_text(current)}), best {fmt(best)}, {current['status']}"
                    )
                    if line != last:
                        report(line)
                        last = line
            time.sleep(0.2)


if __name__ == "__main__":
    app()
