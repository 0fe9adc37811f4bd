"""What a sweep's results say: the best configs, the lr-versus-decay rule, importances."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from service import schemas
from service.catalog import Catalog, SweepInfo
from service.db import Database
from service.errors import Conflict, NotFound


class Analysis:
    """Answers computed from a sweep's complete trials."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog

    def complete_trials(self, info: SweepInfo) -> list[FrozenTrial]:
        """The sweep's complete trials (404 once the sweep is deleted).

        A trial read while its study is being deleted can come back without its value (the
        rows go between two reads): such a trial is left out.
        """
        try:
            found = self.db.storage.get_all_trials(
                info.study_id, deepcopy=False, states=(TrialState.COMPLETE,)
            )
        except KeyError:
            raise NotFound(f"sweep {info.id} not found") from None
        return [t for t in found if t.value is not None]

    def best(self, sweep_id: int, k: int) -> schemas.BestOut:
        """The best complete trial and the top k as ready-to-use configs."""
        info = self.catalog.info(sweep_id)
        done = self.complete_trials(info)
        if not done:
            raise Conflict(f"sweep {sweep_id} has no complete trial yet")
        sign = -1.0 if info.spec.objective.direction == "maximize" else 1.0
        done.sort(key=lambda t: (sign * t.value, t.number))
        configs = [config(info, t) for t in done[:k]]
        return schemas.BestOut(best=configs[0], top=configs)

    def scaling_rule(self, sweep_id: int) -> schemas.ScalingFitOut:
        """``optim.scaling.fit_lr_decay`` on the sweep's complete Lion trials."""
        from optim.scaling import fit_lr_decay

        info = self.catalog.info(sweep_id)
        points = []
        for t in self.complete_trials(info):
            p = info.params(t)
            if p.get("optimizer", "lion") == "lion" and "lr" in p and "weight_decay" in p:
                points.append((p["lr"], p["weight_decay"], t.value))
        if len(points) < 3:
            raise Conflict(
                f"the scaling rule needs at least 3 complete Lion trials; sweep {sweep_id} "
                f"has {len(points)}"
            )
        try:
            fit = fit_lr_decay(points, direction=info.spec.objective.direction)
        except ValueError as e:
            raise Conflict(f"cannot fit the scaling rule: {e}") from None
        d = fit.as_dict()
        return schemas.ScalingFitOut(**{k: d[k] for k in schemas.ScalingFitOut.model_fields})

    def importances(self, sweep_id: int) -> schemas.ImportancesOut:
        """Optuna's parameter importances over complete trials."""
        info = self.catalog.info(sweep_id)
        if len(self.complete_trials(info)) < 2:
            raise Conflict("importances need at least 2 complete trials")
        try:
            imp = optuna.importance.get_param_importances(self.catalog.study(info))
        except KeyError:  # deleted meanwhile
            raise NotFound(f"sweep {sweep_id} not found") from None
        except (ValueError, RuntimeError) as e:
            raise Conflict(f"cannot compute importances: {e}") from None
        return schemas.ImportancesOut(importances={k: float(v) for k, v in imp.items()})


def config(info: SweepInfo, t: FrozenTrial) -> schemas.ConfigOut:
    """A trial as ready-to-use config; unswept warmup/batch size from what the worker used."""
    p = info.params(t)
    used = t.user_attrs.get("config") or {}
    return schemas.ConfigOut(
        trial_number=t.number,
        value=t.value,
        optimizer=p.get("optimizer", "lion"),
        optimizer_kwargs=schemas.OptimizerKwargs(
            lr=p.get("lr"),
            betas=[p.get("beta1"), p.get("beta2")],
            weight_decay=p.get("weight_decay"),
        ),
        warmup_steps=p.get("warmup_steps", used.get("warmup_steps")),
        batch_size=p.get("batch_size", used.get("batch_size")),
        params=p,
    )
