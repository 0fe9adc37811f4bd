"""Prometheus metrics: sweeps by status, trials by state, claim latency."""

from __future__ import annotations

from collections.abc import Iterator

from optuna.trial import TrialState
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Enum, Integer, column, func, select, table

from service.db import Database
from service.models import Sweep
from service.schemas import STATES, SWEEP_STATUSES

_trials = table(
    "trials", column("study_id", Integer), column("state", Enum(TrialState, name="trialstate"))
)


class _StateCollector(Collector):
    """Counts read from the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sweeps = GaugeMetricFamily("lionsweep_sweeps", "Sweeps by status", labels=["status"])
        trials = GaugeMetricFamily("lionsweep_trials", "Trials by state", labels=["state"])
        # Every status and state is exported, 0 included, so a series never vanishes.
        by_status = dict.fromkeys(SWEEP_STATUSES, 0)
        by_state = dict.fromkeys(STATES, 0)
        with self.db.session() as s:
            for st, n in s.execute(select(Sweep.status, func.count()).group_by(Sweep.status)).all():
                by_status[st] = by_status.get(st, 0) + n
            for st, n in s.execute(
                select(_trials.c.state, func.count())
                .join(Sweep, Sweep.study_id == _trials.c.study_id)
                .group_by(_trials.c.state)
            ).all():
                name = str(getattr(st, "name", st)).lower()
                name = "failed" if name == "fail" else name
                by_state[name] = by_state.get(name, 0) + n
        for status, n in by_status.items():
            sweeps.add_metric([status], n)
        for state, n in by_state.items():
            trials.add_metric([state], n)
        yield sweeps
        yield trials


class Metrics:
    """One registry per app."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(db))
        self.claim_latency = Histogram(
            "lionsweep_claim_seconds",
            "Time to answer POST /api/trials/claim",
            labelnames=["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
