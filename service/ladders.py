"""The ladder service: one object the ladder routes call, composed of the modules that hold
the rules (as :mod:`service.sweeps` is for sweeps).

A width ladder is one submission that becomes one sweep per width (its rungs); the rungs'
optima become width exponents and a prediction, and a confirmation runs the prediction at a
new width beside the widest rung's own optimum, untransferred.

- ``ladder_spec``: a ladder spec checked and turned into rung and confirmation specs (pure);
- ``ladder_ledger``: every write to a ladder and its sweeps, one transaction each;
- ``ladder_views``: ladders in the API's shapes;
- ``ladder_follow``: follow rungs added once the rungs are complete, in the background;
- ``ladder_analysis``: the width rule, predictions and confirmations' verdicts, over the
  numbers of ``ladder_fit`` (pure).
"""

from __future__ import annotations

from service import schemas
from service.analysis import Analysis
from service.catalog import Catalog
from service.db import Database
from service.ladder_analysis import LadderAnalysis
from service.ladder_follow import Follower
from service.ladder_ledger import LadderLedger
from service.ladder_views import LadderViews
from service.ledger import Ledger
from service.settings import Settings
from service.views import Views


class Ladders:
    """Width ladders over the sweep service's parts (safe to share between threads)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        ledger: Ledger,
        views: Views,
        analysis: Analysis,
    ) -> None:
        self.views = LadderViews(db, views)
        self.analysis = LadderAnalysis(catalog, analysis, self.views)
        self.ledger = LadderLedger(db, settings, catalog, ledger, views, self.views, self.analysis)
        self.follower = Follower(db, self.ledger)
        ledger.completed.append(self.follower.sweep_completed)

    def create(
        self, spec: schemas.LadderSpec, idempotency_key: str | None = None
    ) -> tuple[schemas.LadderOut, bool]:
        """Create a ladder and one sweep per width; returns (ladder, created). The same
        ``idempotency_key`` with the same spec returns the first."""
        ladder_id, created = self.ledger.create(spec, idempotency_key)
        return self.get(ladder_id), created

    def adopt(
        self, req: schemas.LadderFromSweeps, idempotency_key: str | None = None
    ) -> tuple[schemas.LadderOut, bool]:
        """Make a ladder of existing sweeps (imported runs, or sweeps run before), each a rung
        at the point its task params give; returns (ladder, created)."""
        ladder_id, created = self.ledger.adopt(req, idempotency_key)
        return self.get(ladder_id), created

    def get(self, ladder_id: int) -> schemas.LadderOut:
        """One ladder with its rungs and confirmations."""
        return self.views.get(ladder_id)

    def list(self, offset: int, limit: int) -> schemas.LadderPage:
        """A page of ladders, newest first."""
        return self.views.list(offset, limit)

    def rule(self, ladder_id: int, target: dict[str, float] | None = None) -> schemas.LadderRuleOut:
        """How η* and λ* move along each axis, scored against the named rules; with
        ``target`` (a value per role: width, steps, batch), the prediction there; the
        confirmations."""
        return self.analysis.rule(ladder_id, target)

    def confirm(self, ladder_id: int, req: schemas.ConfirmRequest) -> schemas.LadderOut:
        """Queue the prediction at the request's point beside a rung's own optimum, unmoved, as
        a confirmation sweep."""
        self.ledger.confirm(ladder_id, req)
        return self.get(ladder_id)

    def extend(self, ladder_id: int, req: schemas.ExtendRequest) -> schemas.LadderOut:
        """Add rungs, each box centred on the current fit's prediction there (or the ladder's
        own box)."""
        self.ledger.extend(ladder_id, req)
        return self.get(ladder_id)

    def cancel(self, ladder_id: int) -> schemas.LadderOut:
        """Cancel every rung and confirmation that is not complete."""
        self.ledger.set_status(ladder_id, "cancelled")
        return self.get(ladder_id)

    def resume(self, ladder_id: int) -> schemas.LadderOut:
        """Resume a cancelled ladder's rungs and confirmations."""
        self.ledger.set_status(ladder_id, "running")
        return self.get(ladder_id)

    def delete(self, ladder_id: int) -> None:
        """Delete the ladder, its rungs and confirmations, and their Optuna studies."""
        self.ledger.delete(ladder_id)

    def release(self, ladder_id: int) -> int:
        """Add the ladder's follow rungs if they are due (every rung complete, not held);
        returns how many were added (0 when none were due or another process added them)."""
        return self.ledger.release(ladder_id)

    def release_due(self) -> int:
        """Add the follow rungs of every ladder where they are due; returns how many."""
        return self.follower.release_due()

    def close(self) -> None:
        """Stop the background releases."""
        self.follower.close()
