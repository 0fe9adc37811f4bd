"""The sweep service: one object the routes call, composed of the modules that hold the rules.

- ``spec``: a sweep spec turned into Optuna objects (pure, no database);
- ``ledger``: every state change of sweeps and trials, one transaction each;
- ``leases``: finding and expiring trials whose worker went silent;
- ``views``: sweeps and trials in the API's shapes;
- ``analysis``: best configs, the scaling rule, importances;
- ``arms``: Lion against its AdamW baseline arm;
- ``ladders``: width ladders, a service of their own over the same parts (:mod:`service.ladders`);
- ``optuna_tables``: the one place that queries Optuna's tables directly.
"""

from __future__ import annotations

import logging
import warnings

import optuna

from service import schemas
from service.analysis import Analysis
from service.arms import Arms
from service.catalog import Catalog
from service.db import Database
from service.errors import Conflict, Invalid, NotFound, ServiceError
from service.importing import Importer
from service.ladders import Ladders
from service.leases import Leases
from service.ledger import Ledger
from service.settings import Settings
from service.views import Views

__all__ = ["Conflict", "Invalid", "NotFound", "ServiceError", "Sweeps"]

log = logging.getLogger("lionsweep.sweeps")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)


class Sweeps:
    """The sweep service over one database (safe to share between threads)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.catalog = Catalog(db)
        self.ledger = Ledger(db, settings, self.catalog)
        self.leases = Leases(db, settings, self.ledger)
        self.views = Views(db, self.catalog)
        self.analysis = Analysis(db, self.catalog, self.ledger.declared_params)
        self.arms = Arms(self.analysis)
        self.ladders = Ladders(db, settings, self.catalog, self.ledger, self.views, self.analysis)
        self.importer = Importer(db, self.catalog)

    # ---- sweeps ----

    def create(
        self, spec: schemas.SweepSpec, idempotency_key: str | None = None
    ) -> tuple[schemas.SweepOut, bool]:
        """Create a sweep and its Optuna study; returns (sweep, created)."""
        sweep_id, created = self.ledger.create(spec, idempotency_key)
        return self.get(sweep_id), created

    def get(self, sweep_id: int) -> schemas.SweepOut:
        """One sweep."""
        return self.views.sweep(self.views.row(sweep_id))

    def list(self, offset: int, limit: int, status: str | None) -> schemas.SweepPage:
        """A page of sweeps, newest first."""
        return self.views.page(offset, limit, status)

    def cancel(self, sweep_id: int) -> schemas.SweepOut:
        """Stop new claims; running workers are told to stop."""
        self.ledger.set_status(sweep_id, "cancelled")
        return self.get(sweep_id)

    def resume(self, sweep_id: int) -> schemas.SweepOut:
        """Let a cancelled sweep's trials be claimed again."""
        self.ledger.set_status(sweep_id, "running")
        return self.get(sweep_id)

    def delete(self, sweep_id: int) -> None:
        """Delete the sweep and its Optuna study."""
        self.ledger.delete(sweep_id)

    def import_trials(
        self, sweep_id: int, req: schemas.TrialImport, idempotency_key: str | None = None
    ) -> schemas.ImportOut:
        """Add finished runs made elsewhere as trials of the sweep, all or nothing (once per
        ``idempotency_key``)."""
        return self.importer.run(sweep_id, req, idempotency_key)

    # ---- reads ----

    def trials(
        self, sweep_id: int, state: str | None, offset: int, limit: int
    ) -> schemas.TrialPage:
        """A page of a sweep's trials by number."""
        return self.views.trials(sweep_id, state, offset, limit)

    def trial(self, sweep_id: int, number: int) -> schemas.TrialOut:
        """One trial by number."""
        return self.views.trial_by_number(sweep_id, number)

    def best(self, sweep_id: int, k: int) -> schemas.BestOut:
        """The top k distinct configs by seed mean, with intervals and the seed noise."""
        return self.analysis.best(self.views.row(sweep_id).id, k)

    def arms_answer(self, sweep_id: int) -> schemas.ArmsOut:
        """Lion against the AdamW baseline arm: each arm's best, the difference, a verdict."""
        return self.arms.answer(self.views.row(sweep_id).id)

    def scaling_rule(
        self,
        sweep_id: int,
        to_width: float | None = None,
        width_rule: str = "sqrt",
        from_width: float | None = None,
    ) -> schemas.RuleOut:
        """The lr × weight-decay answer with its verdict, optionally moved to another width."""
        return self.analysis.scaling_rule(
            self.views.row(sweep_id).id, to_width, width_rule, from_width
        )

    def importances(self, sweep_id: int) -> schemas.ImportancesOut:
        """Optuna's parameter importances over complete trials."""
        return self.analysis.importances(self.views.row(sweep_id).id)

    # ---- worker protocol ----

    def claim(
        self, req: schemas.ClaimRequest, token_id: int | None = None
    ) -> schemas.Assignment | None:
        """Give the worker a trial of a running sweep whose task it runs, or None; the trial
        answers to ``token_id`` (the caller's token) alone."""
        return self.ledger.claim(req, token_id)

    def report(
        self, trial_id: int, req: schemas.ReportRequest, token_id: int | None = None
    ) -> schemas.ActionOut:
        """Record an intermediate value (and heartbeat); say continue, prune or stop."""
        return self.ledger.report(trial_id, req, token_id)

    def heartbeat(
        self, trial_id: int, worker_id: str | None = None, token_id: int | None = None
    ) -> schemas.ActionOut:
        """Extend the trial's lease (only its claimant may)."""
        return self.ledger.heartbeat(trial_id, worker_id, token_id)

    def finish(
        self, trial_id: int, req: schemas.FinishRequest, token_id: int | None = None
    ) -> schemas.FinishOut:
        """Complete, prune or fail a running trial (a failure is re-queued while retries remain)."""
        return self.ledger.finish(trial_id, req, token_id)

    def close(self) -> None:
        """Stop background work (before the database is disposed)."""
        self.ladders.close()
        self.ledger.close()

    def reap(self) -> int:
        """Fail and re-queue running trials whose lease expired; returns how many."""
        return self.leases.reap()
