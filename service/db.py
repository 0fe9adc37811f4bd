"""Engine, sessions, migrations and the Optuna storage, all on one database URL."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import Engine, create_engine, event, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from service.models import Sweep
from service.settings import Settings

log = logging.getLogger("lionsweep.db")

REPO_ROOT = Path(__file__).resolve().parents[1]
SQLITE_BUSY_MS = 60_000
_MIGRATION_LOCK_KEY = 0x1105_5EE9


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    """SQLite: WAL (readers never block the writer) and a long busy timeout.

    The driver's default transaction handling is kept: reads run outside a transaction
    and BEGIN comes with the first write, so a read-then-write never hits a stale
    snapshot ("database is locked") and Optuna's nested connections never deadlock.
    """
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def engine_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` suited to the configured backend."""
    if settings.is_sqlite:
        return {"connect_args": {"timeout": SQLITE_BUSY_MS / 1000}}
    kwargs: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_pre_ping": True,
    }
    if not settings.db_synchronous_commit:
        kwargs["connect_args"] = {"options": "-c synchronous_commit=off"}
    return kwargs


def make_engine(settings: Settings) -> Engine:
    """A SQLAlchemy engine for ``settings.database_url``."""
    return create_engine(settings.database_url, **engine_kwargs(settings))


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite database file, or None for PostgreSQL / in-memory SQLite."""
    if not settings.is_sqlite:
        return None
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return None
    return Path(database).resolve()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (excludes other processes and threads)."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _migration_lock(settings: Settings, engine: Engine) -> Iterator[None]:
    """Serialize schema creation between server processes starting together."""
    path = sqlite_path(settings)
    if path is not None:
        with file_lock(path.with_name(path.name + ".migrate.lock")):
            yield
    elif settings.is_sqlite:
        yield
    else:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()


def alembic_config(settings: Settings) -> Any:
    """The Alembic configuration (alembic.ini + migrations/) pointed at our database."""
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(settings: Settings) -> None:
    """Apply our Alembic migrations (``alembic upgrade head``) and create Optuna's tables."""
    from alembic import command

    engine = make_engine(settings)
    try:
        with _migration_lock(settings, engine):
            command.upgrade(alembic_config(settings), "head")
            storage = optuna.storages.RDBStorage(
                settings.database_url, engine_kwargs=engine_kwargs(settings)
            )
            storage.engine.dispose()
    finally:
        engine.dispose()


class Database:
    """Our engine and sessions plus the Optuna storage on the same database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.rdb = optuna.storages.RDBStorage(
            settings.database_url,
            engine_kwargs=engine_kwargs(settings),
            skip_table_creation=True,
        )
        self.storage = optuna.storages.get_storage(self.rdb)
        self._sqlite_file = sqlite_path(settings)

    @property
    def is_sqlite(self) -> bool:
        """True on SQLite."""
        return self.settings.is_sqlite

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error and always closes."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def sweep_lock(self, sweep_id: int) -> Iterator[Session]:
        """Hold the sweep's claim lock across processes (and threads) until exit.

        Yields the session to do the reads under the lock with (taking a second pooled
        connection while holding the lock could exhaust the pool, as the waiters each
        hold one). PostgreSQL: ``SELECT … FOR UPDATE`` on the sweep row, released when
        the session commits on exit. SQLite: an exclusive lock on a file next to the
        database — a held SQLite write transaction would block Optuna's own writes —
        and reads outside any transaction (the driver begins one only at a write).
        """
        if self.is_sqlite:
            lock = (
                file_lock(self._sqlite_file.with_name(self._sqlite_file.name + ".claim.lock"))
                if self._sqlite_file is not None
                else contextlib.nullcontext()
            )
            with lock, self.session() as session:
                yield session
        else:
            with self.session() as session:
                session.execute(select(Sweep.id).where(Sweep.id == sweep_id).with_for_update())
                yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        self.rdb.engine.dispose()
