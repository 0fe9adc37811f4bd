"""Our own tables: sweeps, ladders, leases, workers, API tokens and server liveness (trials
live in Optuna's tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base whose metadata holds only lionsweep's tables."""

    metadata = MetaData(naming_convention=NAMING)


class Sweep(Base):
    """One sweep: its spec and status; its trials are the Optuna study ``study_name``."""

    __tablename__ = "lionsweep_sweeps"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    task_name: Mapped[str] = mapped_column(String(200), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_trials: Mapped[int] = mapped_column(Integer)
    study_name: Mapped[str | None] = mapped_column(String(300), unique=True)
    study_id: Mapped[int | None] = mapped_column(Integer, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    ladder_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The ladder this sweep is a rung (or confirmation) of, if any."""
    ladder_role: Mapped[str | None] = mapped_column(String(16))
    """``rung`` (swept to fit the ladder's rule) or ``confirm`` (runs its prediction)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Ladder(Base):
    """A ladder: one sweep per rung, a point over its scale axes (width, steps, batch) or a
    width of the task's width param (its rungs are the sweeps whose ``ladder_id`` is this id),
    plus the confirmation sweeps of its prediction. ``param`` is its width axis (else its
    first axis); ``spec`` holds the axes and their roles."""

    __tablename__ = "lionsweep_ladders"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    task_name: Mapped[str] = mapped_column(String(200), index=True)
    param: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The spec as created: ``spec`` changes as rungs are added; a retry with the same
    Idempotency-Key is compared with this (None on a ladder made before it was kept)."""
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Lease(Base):
    """A claimed trial's lease: who holds it, under which claim request, and its last sign of
    life. Times are seconds since the epoch read from the database clock (``Database.clock``),
    written and compared by the database alone, so no server's time zone or clock enters."""

    __tablename__ = "lionsweep_leases"

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sweep_id: Mapped[int] = mapped_column(Integer, index=True)
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    worker_id: Mapped[str] = mapped_column(String(200))
    claimed_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float, index=True)
    last_step: Mapped[int | None] = mapped_column(Integer)
    """The step of the last report, with ``last_action`` the answer it got (a retried report
    of the same step gets the same answer)."""
    last_action: Mapped[str | None] = mapped_column(String(16))
    token_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The API token the trial was claimed with (None on an open server): only calls signed
    with it may report, heartbeat or finish the trial."""


class Worker(Base):
    """A worker agent as last seen by the claim endpoint (announces its tasks)."""

    __tablename__ = "lionsweep_workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    device: Mapped[str] = mapped_column(String(100))
    tasks: Mapped[list[str]] = mapped_column(JSON)
    task_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Per task, the params it accepts with their bounds, as the worker declared them."""
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Token(Base):
    """An API token: only the SHA-256 of the secret is stored."""

    __tablename__ = "lionsweep_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the token was revoked (a revoked token authenticates nothing; its row stays, so
    revoking the last token never opens the server)."""


class Liveness(Base):
    """One row: when a server last showed it was alive and could reach the database, on the
    database clock (seconds since the epoch). A gap in it is time no server was serving, which
    the reaper gives back to every lease before it judges one stale."""

    __tablename__ = "lionsweep_liveness"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    alive_at: Mapped[float] = mapped_column(Float)
