"""Shared fixtures: real databases (SQLite file, fresh PostgreSQL) and real API servers.

Fixtures for everyone:

- ``postgres_admin_url`` (session): the admin URL (env ``LIONSWEEP_TEST_POSTGRES_URL``,
  default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). Skips, saying why,
  when the server is unreachable — except with ``CI=true``, where it fails instead.
- ``make_postgres_db`` (session): a factory; each call returns the URL of a fresh database,
  a ``CREATE DATABASE … TEMPLATE`` clone of one template migrated once per session
  (``service.db.upgrade``); ``make_postgres_db(empty=True)`` gives a blank one and
  ``make_postgres_db.drop(url)`` drops one early. Names carry the pid and a random part
  (runs may share the server); all, the template last, are dropped at the end of the session.
- ``postgres_url`` (session): one fresh PostgreSQL database shared by the whole session.
- ``make_sqlite_url`` (session): a factory returning a new SQLite file URL each call.
- ``sqlite_url`` (function): a fresh SQLite file URL for one test.
- ``database_url`` (function, parametrized ``sqlite`` / ``postgres``): a fresh database on
  each backend; the PostgreSQL case carries the ``postgres`` mark, is a migrated clone
  (blank for tests marked ``empty_database``) and is dropped when the test ends.
- ``free_port`` (function): an unused TCP port; ``get_free_port`` is the function itself.
- ``wait_for`` (function): ``wait_for(predicate, timeout=15.0, what=..., every=0.2)`` polls
  until ``predicate()`` is truthy and returns that value, or fails the test after ``timeout``.
- ``live_server`` (function) / ``module_live_server`` (module): factories that start
  ``lionsweep serve`` (a real uvicorn subprocess) and wait for ``/healthz``::

      server = live_server(database_url, env={"LIONSWEEP_HEARTBEAT_GRACE_SECONDS": "2"})
      httpx.get(server.url + "/api/sweeps")

  Each returns a :class:`LiveServer` (``url``, ``port``, ``database_url``, ``log_path``,
  ``process``, ``stop()``, ``log()``); servers are stopped at teardown.

Tests marked ``postgres`` that use none of these fixtures are still skipped (or failed in
CI) when PostgreSQL is unreachable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.pool import NullPool

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium, the browser the dashboard tests drive."""


# ---- PostgreSQL --------------------------------------------------------------------------


def _postgres_problem(url: str) -> str | None:
    """None when ``url`` accepts connections, else why not."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as e:  # any driver error means "unusable here"
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The PostgreSQL admin URL; skip (fail under CI=true) when it is unreachable."""
    url = os.environ.get("LIONSWEEP_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL
    problem = _postgres_problem(url)
    if problem is not None:
        msg = (
            f"PostgreSQL is unreachable at {make_url(url).render_as_string(hide_password=True)} "
            f"({problem}); set LIONSWEEP_TEST_POSTGRES_URL to an admin URL to run these tests"
        )
        if IN_CI:
            pytest.fail(msg + " — mandatory because CI=true")
        pytest.skip(msg)
    return url


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rdb_storage(database_url: str) -> Any:
    """Optuna's storage on ``database_url`` without a connection pool, so that a test that
    reads a study leaves no connection open behind it (a plain URL makes Optuna keep a
    pooled engine until garbage collection)."""
    import optuna

    return optuna.storages.RDBStorage(database_url, engine_kwargs={"poolclass": NullPool})


def study_names(database_url: str) -> list[str]:
    """The names of the Optuna studies in the database at ``database_url``, read through an
    engine that is closed again (``optuna.get_all_study_names(url)`` leaves its engine's
    connections open until garbage collection)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT study_name FROM studies ORDER BY study_id")))
    finally:
        engine.dispose()


def _drop_database(conn: Connection, name: str) -> None:
    """Disconnect everyone from database ``name``, then drop it (no error if it is gone)."""
    conn.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :n AND pid <> pg_backend_pid()"
        ),
        {"n": name},
    )
    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


class PostgresDatabases:
    """Fresh PostgreSQL databases, each a clone of one migrated template.

    The template (``lionsweep_tpl_<pid>_<random>``) is created and migrated with
    ``service.db.upgrade`` on the first call, then closed to connections so cloning never
    trips over one. Each call returns the URL of a new ``lionsweep_test_<pid>_<random>``
    database, ``CREATE DATABASE … TEMPLATE`` the template (``empty=True``: a blank one).
    The random part keeps two test runs sharing one server apart. ``drop(url)`` removes
    one early; ``close()`` drops whatever is left, the template last. Databases left by a
    killed run on this machine (its pid is gone) are dropped when the next one starts.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []
        self.template: str | None = None
        self._drop_leftovers()

    def _drop_leftovers(self) -> None:
        """Drop the databases of test runs on this machine that died before cleaning up.

        Only for a server on this machine: a pid from another machine says nothing here.
        """
        if make_url(self.admin_url).host not in (None, "", "localhost", "127.0.0.1", "::1"):
            return
        with self.admin.connect() as conn:
            names = conn.scalars(
                text(
                    "SELECT datname FROM pg_database "
                    "WHERE datname ~ '^lionsweep_(tpl|test)_[0-9]+_[0-9a-f]{8}$'"
                )
            ).all()
            for name in names:
                if not _process_alive(int(name.split("_")[2])):
                    _drop_database(conn, name)

    def _name(self, kind: str) -> str:
        return f"lionsweep_{kind}_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    def _url(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _ensure_template(self) -> str:
        if self.template is not None:
            return self.template
        from service.db import upgrade
        from service.settings import Settings

        name = self._name("tpl")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.template = name  # dropped by close() even if migrating fails
        upgrade(Settings(database_url=self._url(name)))
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
        return name

    def __call__(self, *, empty: bool = False) -> str:
        """The URL of a new database: migrated (a template clone), or blank with ``empty``."""
        template = "template0" if empty else self._ensure_template()
        name = self._name("test")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        self.created.append(name)
        return self._url(name)

    def drop(self, url: str) -> None:
        """Drop the database at ``url`` now (one this factory made)."""
        name = make_url(url).database
        if name not in self.created:
            raise ValueError(f"{name!r} was not created by this factory")
        with self.admin.connect() as conn:
            _drop_database(conn, name)
        self.created.remove(name)

    def open_connections(self) -> list[str]:
        """The connections still open to this factory's databases (``db: state, app``)."""
        names = [*self.created, *([self.template] if self.template else [])]
        if not names:
            return []
        with self.admin.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT datname, state, application_name FROM pg_stat_activity "
                    "WHERE datname = ANY(:names) AND pid <> pg_backend_pid()"
                ),
                {"names": names},
            ).all()
        return [f"{db}: {state}, {app or 'no application name'}" for db, state, app in rows]

    def close(self) -> None:
        """Drop every database still here, then the template; raise if any connection to
        them was still open (every server is stopped by now, so it leaked from a test)."""
        leaked = self.open_connections()
        with self.admin.connect() as conn:
            for name in [*self.created, *([self.template] if self.template else [])]:
                _drop_database(conn, name)
        self.created.clear()
        self.template = None
        self.admin.dispose()
        if leaked:
            raise AssertionError(
                f"the tests left {len(leaked)} PostgreSQL connection(s) open:\n" + "\n".join(leaked)
            )


@pytest.fixture(scope="session")
def make_postgres_db(postgres_admin_url: str) -> Iterator[PostgresDatabases]:
    """Factory: a fresh, migrated PostgreSQL database's URL per call (all dropped at the end).

    ``make_postgres_db(empty=True)`` gives a blank one instead; ``make_postgres_db.drop(url)``
    drops one before the session ends.
    """
    databases = PostgresDatabases(postgres_admin_url)
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def postgres_url(make_postgres_db: Callable[[], str]) -> str:
    """One fresh PostgreSQL database for the whole test session."""
    return make_postgres_db()


# ---- SQLite ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def make_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """Factory: a URL for a new SQLite file in its own temporary directory."""

    def make() -> str:
        path = tmp_path_factory.mktemp("sqlite") / "lionsweep.db"
        return f"sqlite:///{path}"

    return make


@pytest.fixture
def sqlite_url(make_sqlite_url: Callable[[], str]) -> str:
    """A fresh SQLite file URL."""
    return make_sqlite_url()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on each backend (the test runs once per backend).

    PostgreSQL: a clone of the migrated template, dropped when the test ends; a test
    marked ``empty_database`` gets a blank one (SQLite files always start blank).
    """
    if request.param == "sqlite":
        yield request.getfixturevalue("make_sqlite_url")()
        return
    databases: PostgresDatabases = request.getfixturevalue("make_postgres_db")
    url = databases(empty=request.node.get_closest_marker("empty_database") is not None)
    yield url
    databases.drop(url)


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        "empty_database: database_url gives a blank PostgreSQL database, not a clone",
        "postgres: needs the PostgreSQL server (skipped when unreachable, failed under CI)",
        "browser: drives the dashboard in headless Chromium",
        "slow: takes over ~10 s here (`pytest -m 'not slow'` is the quick inner loop)",
    ):
        config.addinivalue_line("markers", marker)


@pytest.fixture(autouse=True)
def _postgres_gate(request: pytest.FixtureRequest) -> None:
    """Tests marked ``postgres`` skip (or fail under CI) when the server is unreachable."""
    if request.node.get_closest_marker("postgres") is not None:
        request.getfixturevalue("postgres_admin_url")


# ---- ports and servers -------------------------------------------------------------------


def get_free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (the OS picks it)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(name="get_free_port")
def _get_free_port_fixture() -> Callable[..., int]:
    """The ``get_free_port(host=...)`` function."""
    return get_free_port


@pytest.fixture
def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    return get_free_port()


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 15.0,
    what: str = "condition",
    *,
    every: float = 0.2,
) -> object:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``.

    An HTTP error while polling (a server still starting) counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(every)


@pytest.fixture(name="wait_for")
def _wait_for_fixture() -> Callable[..., object]:
    """The ``wait_for(predicate, timeout=..., what=..., every=...)`` function."""
    return wait_for


def lionsweep_command() -> list[str]:
    """How to run the ``lionsweep`` console script of this interpreter."""
    script = Path(sys.executable).with_name("lionsweep")
    if script.exists():
        return [str(script)]
    found = shutil.which("lionsweep")
    return [found] if found else [sys.executable, "-m", "lionsweep.server_cli"]


@dataclass
class LiveServer:
    """A running ``lionsweep serve`` subprocess."""

    url: str
    port: int
    host: str
    database_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL at once (a crashed server)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class ServerFactory:
    """Starts servers on demand and stops all of them on ``close()``."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.servers: list[LiveServer] = []

    def __call__(
        self,
        database_url: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        timeout: float = 45.0,
        args: list[str] | None = None,
    ) -> LiveServer:
        """Start ``lionsweep serve`` on ``database_url`` and wait until /healthz answers."""
        port = port or get_free_port(host)
        log_path = self.tmp_path_factory.mktemp("server") / f"server-{port}.log"
        full_env = {
            **os.environ,
            "LIONSWEEP_DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
            # Scripted trials take milliseconds, so `reevaluate: auto` would follow every test
            # sweep with 9 re-runs; tests that exercise re-evaluation ask for it in the spec.
            "LIONSWEEP_REEVALUATE_AUTO_SECONDS": "0",
            # Small pools: many test servers share one PostgreSQL (max_connections 100).
            "LIONSWEEP_DB_POOL_SIZE": "2",
            "LIONSWEEP_DB_MAX_OVERFLOW": "6",
            **(env or {}),
        }
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [*lionsweep_command(), "serve", "--host", host, "--port", str(port), *(args or [])],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log_path.parent,
            )
        server = LiveServer(
            url=f"http://{host}:{port}",
            port=port,
            host=host,
            database_url=database_url,
            log_path=log_path,
            process=proc,
            env=dict(env or {}),
        )
        self.servers.append(server)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"lionsweep serve exited with {proc.returncode}:\n{server.log()[-4000:]}"
                )
            try:
                if httpx.get(server.url + "/healthz", timeout=1.0).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"server not healthy in {timeout}s:\n{server.log()[-4000:]}")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop every server started by this factory."""
        for server in self.servers:
            server.stop()
        self.servers.clear()


@pytest.fixture
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Factory for real servers stopped after the test: ``live_server(database_url, ...)``."""
    factory = ServerFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Like ``live_server`` but the servers live until the end of the module."""
    factory = ServerFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture
def foreach_lion_one_thread(monkeypatch) -> Iterator[None]:
    """Train in-process with Lion's foreach step on one torch thread (steady on a small CPU)."""
    import torch

    monkeypatch.setenv("LIONSWEEP_LION_IMPL", "foreach")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(request: pytest.FixtureRequest, module_live_server: ServerFactory) -> LiveServer:
    """One real server per test module and backend (SQLite, then PostgreSQL)."""
    if request.param == "sqlite":
        url = request.getfixturevalue("make_sqlite_url")()
    else:
        url = request.getfixturevalue("make_postgres_db")()
    return module_live_server(url)


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client of the module's ``server``."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        why = "Debian's Chromium is not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(why + " — mandatory because CI=true")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page whose console errors and uncaught exceptions are collected in ``.errors``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.on("pageerror", lambda e: tab.errors.append(f"uncaught: {e}"))
    yield tab
    context.close()
