"""Migrations: our schema matches the models, and shares the database with Optuna's tables."""

from __future__ import annotations

import os
import subprocess

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import lionsweep_command, rdb_storage
from sqlalchemy import create_engine, inspect

from service.db import upgrade
from service.models import Base
from service.settings import Settings

OURS = {
    "lionsweep_sweeps",
    "lionsweep_workers",
    "lionsweep_tokens",
    "lionsweep_liveness",
    "lionsweep_leases",
    "lionsweep_alembic_version",
}


@pytest.mark.empty_database
def test_migrated_schema_matches_models_and_coexists_with_optuna(database_url):
    # Optuna first (its own alembic_version table), then ours, then again: all idempotent.
    optuna.create_study(study_name="plain-optuna", storage=database_url)
    settings = Settings(database_url=database_url)
    upgrade(settings)
    upgrade(settings)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_object": lambda o, n, t, r, c: (
                        t != "table" or n in Base.metadata.tables
                    )
                },
            )
            diff = compare_metadata(ctx, Base.metadata)
            tables = set(inspect(conn).get_table_names())
            ours_version = conn.exec_driver_sql(
                "SELECT version_num FROM lionsweep_alembic_version"
            ).scalar()
            optuna_version = conn.exec_driver_sql(
                "SELECT version_num FROM alembic_version"
            ).scalar()
    finally:
        engine.dispose()
    assert diff == []
    assert tables >= OURS and {"studies", "trials", "trial_heartbeats", "alembic_version"} <= tables
    assert ours_version == "0005" and optuna_version != "0005"
    assert (
        optuna.load_study(study_name="plain-optuna", storage=rdb_storage(database_url)).trials == []
    )


def test_db_upgrade_command(sqlite_url):
    proc = subprocess.run(
        [*lionsweep_command(), "db", "upgrade"],
        env={**os.environ, "LIONSWEEP_DATABASE_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    engine = create_engine(sqlite_url)
    try:
        assert set(inspect(engine).get_table_names()) >= OURS
        journal = engine.connect().exec_driver_sql("PRAGMA journal_mode").scalar()
    finally:
        engine.dispose()
    assert journal == "wal"
