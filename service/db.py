"""Engine, sessions, migrations and the Optuna storage, all on one database URL."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    func,
    literal,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.models import Sweep
from service.settings import Settings

T = TypeVar("T")
CREATE_ATTEMPTS = 3
"""How often a create with an idempotency key is tried when another request with the same key
commits first (the next attempt then finds that request's row)."""


def create_idempotently(create_once: Callable[[], T], key: str | None) -> T:
    """``create_once()``, tried again when it lost a race for its idempotency ``key`` (a
    unique violation): the next attempt answers with what the winner created. Without a key,
    a unique violation is raised at once."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            return create_once()
        except IntegrityError:
            if not key or attempt == CREATE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


log = logging.getLogger("lionsweep.db")

#: Our Alembic scripts: env.py, script.py.mako and versions/, shipped inside the package.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
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
    """The Alembic configuration for our migrations (``service/migrations``), pointed at our
    database; built in code, so an installed package needs no alembic.ini."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
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


_current_tx: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "lionsweep_transaction", default=None
)


_WROTE = "lionsweep_wrote"
_AFTER = "lionsweep_after_commit"
_WRITES = ("INSERT", "UPDATE", "DELETE")


def _note_writes(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
    """Mark a connection that has sent a write since its transaction began."""
    if statement.lstrip()[:6].upper() in _WRITES:
        conn.info[_WROTE] = True


class _TransactionAwareSessions:
    """The session factory Optuna's RDBStorage calls for every storage operation.

    Outside a :meth:`Database.transaction` it hands out Optuna's own pooled sessions.
    Inside one (in this thread or task) it hands out a session joined to the transaction's
    connection (``rollback_only``: Optuna's commit leaves the transaction open, and a rollback
    of Optuna's ends it), so every Optuna write of a state change commits, or rolls back,
    with the transaction, at no extra round trip per call (no savepoints). This is the one
    place where lionsweep reaches into Optuna's storage: it swaps the session factory.
    """

    def __init__(self, default: Any) -> None:
        self._default = default

    def __call__(self) -> Session:
        conn = _current_tx.get()
        if conn is None:
            return self._default()
        return Session(bind=conn, join_transaction_mode="rollback_only")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._default, name)


def _sqlite_explicit_transactions(engine: Engine) -> None:
    """Let ``engine`` open SQLite transactions with ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite
    recipe): the write lock is taken at the start, so one transaction at a time writes and
    savepoints work; the driver's own implicit BEGIN is switched off."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
        self.rdb.scoped_session = _TransactionAwareSessions(self.rdb.scoped_session)
        self.storage = optuna.storages.get_storage(self.rdb)
        self._sqlite_file = sqlite_path(settings)
        if settings.is_sqlite:
            self.tx_engine = make_engine(settings)
            _sqlite_explicit_transactions(self.tx_engine)
        else:
            self.tx_engine = self.engine
        event.listen(self.tx_engine, "before_cursor_execute", _note_writes)

    def clock(self) -> Any:
        """SQL for the database's clock in seconds since the epoch (never the server's clock)."""
        if self.is_sqlite:
            return (func.julianday("now") - literal(2440587.5)) * literal(86400.0)
        return func.extract("epoch", func.clock_timestamp())

    @contextlib.contextmanager
    def transaction(self, sweep_id: int | None = None) -> Iterator[Session]:
        """One unit of work: a session whose commit is the only commit, under the sweep's lock.

        Every Optuna storage call made inside (in this thread) joins the same transaction.
        PostgreSQL: the sweep row is locked ``FOR UPDATE`` (other sweeps go on). SQLite: the
        transaction starts with ``BEGIN IMMEDIATE``, so it holds the database's write lock.
        On any error everything is rolled back, Optuna's writes included; if anything had been
        written, Optuna's trial cache is dropped too (it may have read rows that were never
        committed). A refusal before any write (a 404 or 409) keeps the cache.
        """
        if _current_tx.get() is not None:
            raise RuntimeError("transactions do not nest")
        with self.tx_engine.connect() as conn:
            conn.begin()
            conn.info[_WROTE] = False
            conn.info[_AFTER] = []
            token = _current_tx.set(conn)
            session = Session(bind=conn, join_transaction_mode="rollback_only")
            try:
                if sweep_id is not None and not self.is_sqlite:
                    session.execute(select(Sweep.id).where(Sweep.id == sweep_id).with_for_update())
                yield session
                session.commit()
                conn.commit()
            except BaseException:
                self._abandon(conn)
                raise
            finally:
                session.close()
                _current_tx.reset(token)
                after = conn.info.pop(_AFTER, [])
        for fn in after:
            try:
                fn()
            except Exception:  # committed already: the caller's answer stands
                log.exception("after-commit hook %r failed", fn)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the current transaction has committed (never if it rolls back); an
        error it raises is logged, not raised."""
        conn = _current_tx.get()
        if conn is None:
            raise RuntimeError("after_commit outside a transaction")
        conn.info.setdefault(_AFTER, []).append(fn)

    def _abandon(self, conn: Connection) -> None:
        """Roll back ``conn``'s failed transaction and, if anything may have been written,
        drop Optuna's trial cache. Never raises: the error being handled is the one to report.

        A connection the database dropped (a failover, a terminated backend) was invalidated,
        which resets its ``info``: whether it wrote is then unknown, so the cache goes too.
        """
        try:
            conn.rollback()
        except Exception as exc:  # the connection is gone: the transaction ended with it
            log.warning("rollback failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
        if conn.invalidated or conn.info.get(_WROTE, True):
            self.storage = optuna.storages.get_storage(self.rdb)

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

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        self.tx_engine.dispose()
        self.rdb.engine.dispose()


@contextlib.contextmanager
def migrated(settings: Settings) -> Iterator[Database]:
    """The database of ``settings``, migrated first (``upgrade``), for one short task of a
    command; its connections are closed on the way out."""
    upgrade(settings)
    db = Database(settings)
    try:
        yield db
    finally:
        db.dispose()
