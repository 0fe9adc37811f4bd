"""What a sweep's results say: the best configs with their seed noise, the lr-versus-decay
answer with intervals and a verdict, its transfer to another width, and importances."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from service import optuna_tables as ot
from service import schemas
from service.catalog import Catalog, SweepInfo, config_key
from service.db import Database
from service.errors import Conflict, Invalid, NotFound
from service.ladder_fit import RULES
from service.surface import LEVEL, Box, Observations, Surface, fit_surface

WIDTH_RULES = RULES
"""The named width rules (:data:`service.ladder_fit.RULES`). Which one holds is what a width
ladder measures; one sweep cannot tell."""

METHOD = (
    "quadratic response surface in (ln lr, ln weight decay), the other swept parameters "
    "as additive terms, trials weighted down by their fitted excess over the optimum; "
    "90% intervals from 400 bootstrap refits"
)


BEST_METHOD = (
    "configs are ranked on some of their runs and each config's value is the mean of its "
    "other runs, which took no part in the ranking, so the value of the config ranked first "
    "is not biased by having won (the winner's curse): a re-evaluated config is ranked on its "
    "own run and the first half of its fresh seeds (rounded down, by trial number) and valued "
    "on the rest; a config with n >= 2 runs and no re-runs is ranked on its first ceil(n/2) "
    "runs and valued on the rest; configs with held-out runs rank first. A config that ran "
    "once is valued on that one run, which is biased when it won a ranking (held_out false). "
    "90% intervals: mean ± t(0.95, df) · pooled seed sd / sqrt(runs), the sd pooled over the "
    "configs' repeated runs (their fresh seeds when re-evaluated)"
)
"""How /best ranks configs and estimates their values (its ``method`` field)."""


@dataclass
class ConfigRuns:
    """One distinct config and the runs (seeds) it has.

    Its runs are split in two (see :data:`BEST_METHOD`): those the ranking uses
    (:attr:`ranked_on`) and those its value is estimated on (:attr:`held_out`), so that the
    value of the config ranked first is not biased by having won the ranking.
    """

    params: dict[str, Any]
    trials: list[FrozenTrial] = field(default_factory=list)

    @property
    def first(self) -> FrozenTrial:
        """The config's first trial."""
        return min(self.trials, key=lambda t: t.number)

    @property
    def fresh(self) -> list[FrozenTrial]:
        """Re-evaluation runs (fresh seeds) of the config."""
        return [t for t in self.trials if ot.REEVAL_OF in t.system_attrs]

    @property
    def own(self) -> list[FrozenTrial]:
        """The config's runs from the sweep itself (not re-evaluations), by trial number."""
        return sorted(
            (t for t in self.trials if ot.REEVAL_OF not in t.system_attrs), key=lambda t: t.number
        )

    @property
    def counted(self) -> list[FrozenTrial]:
        """The runs its seed spread is measured on: the fresh seeds when there are any (the run
        that selected the config won a selection, so its value is biased), else every run."""
        return sorted(self.fresh or self.trials, key=lambda t: t.number)

    @property
    def values(self) -> list[float]:
        """The counted runs' values."""
        return [float(t.value) for t in self.counted]

    def _split(self) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        fresh = sorted(self.fresh, key=lambda t: t.number)
        if fresh:
            k = len(fresh) // 2
            return self.own + fresh[:k], fresh[k:]
        runs = sorted(self.trials, key=lambda t: t.number)
        k = (len(runs) + 1) // 2
        return runs[:k], runs[k:]

    @property
    def ranked_on(self) -> list[FrozenTrial]:
        """The runs the ranking uses: a re-evaluated config's own run and its first half of
        fresh seeds (rounded down); any other config's first half of runs (rounded up)."""
        return self._split()[0]

    @property
    def held_out(self) -> list[FrozenTrial]:
        """The runs that took no part in the ranking (the rest, by trial number); none for a
        config that ran once."""
        return self._split()[1]

    @property
    def estimated_on(self) -> list[FrozenTrial]:
        """The runs the config's value is the mean of: the held-out ones, else its one run."""
        return self.held_out or self.ranked_on

    @property
    def rank_value(self) -> float:
        """Mean of the runs the ranking uses."""
        return float(np.mean([t.value for t in self.ranked_on]))

    @property
    def mean(self) -> float:
        """The config's value: mean of :attr:`estimated_on`."""
        return float(np.mean([t.value for t in self.estimated_on]))

    @property
    def selection_value(self) -> float | None:
        """The selecting run's value, when it is left out of the mean."""
        if not self.fresh:
            return None
        own = self.own
        return float(own[0].value) if own else None


@dataclass
class Noise:
    """The sweep's seed-to-seed sd of the objective, pooled over configs run with 2+ seeds."""

    sd: float | None
    df: int

    def t(self) -> float:
        """The t quantile of a two-sided 90% interval at this many degrees of freedom."""
        return float(stats.t.ppf(0.5 + LEVEL / 2, self.df))


def group_configs(info: SweepInfo, done: list[FrozenTrial]) -> list[ConfigRuns]:
    """Complete trials grouped by identical params (a config and its repeats)."""
    groups: dict[Any, ConfigRuns] = {}
    for t in done:
        params = info.params(t)
        groups.setdefault(config_key(params), ConfigRuns(params)).trials.append(t)
    return list(groups.values())


def ranked_configs(info: SweepInfo, done: list[FrozenTrial]) -> tuple[list[ConfigRuns], Noise]:
    """Distinct configs ranked best first — those with held-out runs first, each group by the
    mean of the runs the ranking uses (:attr:`ConfigRuns.ranked_on`) — and the sweep's pooled
    seed noise. Each config's value (``mean``) is over its held-out runs: see
    :data:`BEST_METHOD`."""
    groups = group_configs(info, done)
    groups.sort(key=lambda g: (not g.held_out, info.sign * g.rank_value, g.first.number))
    return groups, pooled_noise(groups)


def pooled_noise(groups: list[ConfigRuns]) -> Noise:
    """Pooled within-config sd of the counted values."""
    ss, df = 0.0, 0
    for g in groups:
        v = g.values
        if len(v) >= 2:
            ss += float(np.var(v, ddof=1)) * (len(v) - 1)
            df += len(v) - 1
    return Noise(math.sqrt(ss / df) if df else None, df)


def reevaluation_out(
    info: SweepInfo, attrs: dict[str, Any], counts: ot.Counts
) -> schemas.ReevaluationOut:
    """Where the re-evaluation of the sweep's leading configs stands."""
    decided = attrs.get(ot.REEVALUATION)
    cfg = info.spec.reevaluate
    mode = cfg.mode
    if decided is None:
        if mode == "off":
            return schemas.ReevaluationOut(status="off")
        when = "when the sweep's own trials are done"
        if mode == "auto":
            when += ", if cheap enough"
        return schemas.ReevaluationOut(
            status="pending",
            top_k=cfg.top_k,
            seeds=cfg.seeds,
            reason=f"the top {cfg.top_k} configs are re-run with {cfg.seeds} fresh seeds {when}",
        )
    status = decided.get("status", "off")
    if status == "queued" and counts.reeval_pending == 0:
        status = "done"
    return schemas.ReevaluationOut(
        status=status,
        top_k=decided.get("top_k"),
        seeds=decided.get("seeds"),
        trials=counts.reeval_planned,
        finished=counts.reeval_finished,
        reason=decided.get("reason"),
    )


class Analysis:
    """Answers computed from a sweep's trials."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        declared: Callable[[str], dict[str, dict[str, Any]] | None] | None = None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.declared = declared or (lambda _task: None)
        self._lock = threading.Lock()
        self._surfaces: dict[int, tuple[Any, Surface]] = {}

    def all_trials(self, info: SweepInfo) -> list[FrozenTrial]:
        """Every trial of the sweep (404 once the sweep is deleted)."""
        try:
            return self.db.storage.get_all_trials(info.study_id, deepcopy=False)
        except KeyError:
            raise NotFound(f"sweep {info.id} not found") from None

    def complete_trials(self, info: SweepInfo) -> list[FrozenTrial]:
        """The sweep's complete trials (404 once the sweep is deleted).

        A trial read while its study is being deleted can come back without its value (the
        rows go between two reads): such a trial is left out.
        """
        return [
            t
            for t in self.all_trials(info)
            if t.state == TrialState.COMPLETE and t.value is not None
        ]

    # ---- best ----

    def best(self, sweep_id: int, k: int) -> schemas.BestOut:
        """The top k distinct configs, ranked and valued on disjoint runs (:data:`BEST_METHOD`),
        with intervals and the noise."""
        info = self.catalog.info(sweep_id)
        done = self.complete_trials(info)
        if not done:
            raise Conflict(f"sweep {sweep_id} has no complete trial yet")
        sign = info.sign
        groups, noise = ranked_configs(info, done)
        top = groups[:k]
        best = top[0]
        tied = [best.first.number]
        if noise.sd is not None:
            tq = noise.t()
            for g in top[1:]:
                se = noise.sd * math.sqrt(1 / len(g.estimated_on) + 1 / len(best.estimated_on))
                if abs(g.mean - best.mean) <= tq * se:
                    tied.append(g.first.number)
        with self.db.session() as s:
            counts = ot.counts(s, info.study_id)
        attrs = self._study_attrs(info)
        return schemas.BestOut(
            best=config_out(info, best, noise),
            top=[config_out(info, g, noise) for g in top],
            noise_sd=noise.sd,
            noise_df=noise.df,
            tied=tied,
            note=_best_note(groups, best, noise, tied, sign),
            reevaluation=reevaluation_out(info, attrs, counts),
            method=BEST_METHOD,
        )

    def _study_attrs(self, info: SweepInfo) -> dict[str, Any]:
        try:
            return self.db.storage.get_study_system_attrs(info.study_id)
        except KeyError:
            raise NotFound(f"sweep {info.id} not found") from None

    # ---- the rule ----

    def scaling_rule(
        self,
        sweep_id: int,
        to_width: float | None = None,
        width_rule: str = "sqrt",
        from_width: float | None = None,
    ) -> schemas.RuleOut:
        """The fitted lr × weight-decay surface's verdict, valley, optimum and intervals, and
        optionally the answer moved to ``to_width`` under ``width_rule``."""
        info = self.catalog.info(sweep_id)
        trials = self.all_trials(info)
        rows, left_out = _rule_rows(info, trials)
        if not rows:
            raise Conflict(
                f"sweep {sweep_id} has no complete Lion trial with lr > 0 and weight decay > 0 "
                "to fit the rule to"
            )
        sign = info.sign
        groups, noise = ranked_configs(info, [t for t, _ in rows])
        best = groups[0]
        box, box_out = _box(info, rows)
        surface = self._surface(info, rows, best.params, box, sign)
        opt = None
        if surface.lr is not None:
            opt = schemas.Estimate(
                lr=surface.lr.value,
                weight_decay=surface.weight_decay.value,
                value=sign * surface.value.value,
                lr_ci=surface.lr.pair(),
                weight_decay_ci=surface.weight_decay.pair(),
                value_ci=sorted(sign * v for v in surface.value.pair()),
            )
        width_param, width = self._width(info)
        out = schemas.RuleOut(
            verdict=surface.verdict,
            reason=surface.reason,
            n=surface.n,
            left_out={**left_out, "outlier": surface.n_outliers},
            left_out_reason=LEFT_OUT_REASON,
            method=METHOD,
            slope=surface.slope.value if surface.slope else None,
            slope_ci=surface.slope.pair() if surface.slope else None,
            product=surface.product.value if surface.product else None,
            product_ci=surface.product.pair() if surface.product else None,
            alpha0=surface.alpha0.value if surface.alpha0 else None,
            alpha0_ci=surface.alpha0.pair() if surface.alpha0 else None,
            optimum=opt,
            on_boundary=surface.on_boundary,
            boundary_edges=surface.boundary_edges,
            noise_sd=noise.sd,
            residual_sd=surface.residual_sd,
            valley=[schemas.ValleyPoint(**p) for p in surface.valley],
            box=box_out,
            best=schemas.BestPoint(
                trial_number=best.first.number,
                lr=best.params["lr"],
                weight_decay=best.params["weight_decay"],
                value=best.mean,
            ),
            width=width,
            width_param=width_param,
            transfer=None,
        )
        if to_width is not None:
            start = from_width if from_width is not None else width
            if start is None:
                raise Invalid(
                    [
                        {
                            "type": "value_error",
                            "loc": ("query", "from_width"),
                            "msg": f"task {info.task_name!r} declares no width param and the "
                            "sweep's width is unknown: give from_width",
                            "input": None,
                        }
                    ]
                )
            out.transfer = transfer(out, start, to_width, width_rule)
        return out

    def fitted(self, sweep_id: int) -> tuple[Surface, ConfigRuns, float] | None:
        """The sweep's fitted surface, its best Lion config and the objective's sign (+1:
        lower is better), or None while it has no complete Lion trial to fit."""
        info = self.catalog.info(sweep_id)
        rows, _ = _rule_rows(info, self.all_trials(info))
        if not rows:
            return None
        groups, _ = ranked_configs(info, [t for t, _ in rows])
        box, _ = _box(info, rows)
        return self._surface(info, rows, groups[0].params, box, info.sign), groups[0], info.sign

    def _surface(
        self,
        info: SweepInfo,
        rows: list[tuple[FrozenTrial, dict[str, Any]]],
        ref: dict[str, Any],
        box: Box,
        sign: float,
    ) -> Surface:
        """The fitted surface, kept while the sweep's complete trials stay the same."""
        stamp = (len(rows), max(t.number for t, _ in rows), tuple(sorted(ref.items())))
        with self._lock:
            hit = self._surfaces.get(info.id)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        obs = _observations(info, rows, ref, sign)
        surface = fit_surface(obs, box)
        with self._lock:
            if len(self._surfaces) > 256:
                self._surfaces.clear()
            self._surfaces[info.id] = (stamp, surface)
        return surface

    def _width(self, info: SweepInfo) -> tuple[str | None, float | None]:
        """The task's declared width param and this sweep's value of it."""
        declared = self.declared(info.task_name) or {}
        for name, rule in declared.items():
            if isinstance(rule, dict) and rule.get("width"):
                value = info.spec.task.params.get(name, rule.get("default"))
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                return name, float(value) if ok and value > 0 else None
        return None, None

    # ---- importances ----

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


LEFT_OUT_REASON = (
    "pruned trials are left out: their objective at the full budget is unknown (the pruner "
    "stopped them early because they trailed, or they diverged), and a value from an earlier "
    "step is not comparable; failed, unfinished, AdamW-arm trials and trials with weight "
    "decay 0 are left out too ('other'), and so are values more than 10 interquartile "
    "ranges above the upper quartile ('outlier': runs that went wrong without diverging)"
)


def _rule_rows(
    info: SweepInfo, trials: list[FrozenTrial], optimizer: str = "lion"
) -> tuple[list[tuple[FrozenTrial, dict[str, Any]]], dict[str, int]]:
    """The complete trials of one optimizer arm (Lion unless ``optimizer`` says otherwise) the
    rule is fitted to, and counts of those left out."""
    left = {"pruned": 0, "failed": 0, "running": 0, "other": 0}
    rows = []
    for t in trials:
        if t.state == TrialState.PRUNED:
            left["pruned"] += 1
            continue
        if t.state == TrialState.FAIL:
            left["failed"] += 1
            continue
        if t.state != TrialState.COMPLETE or t.value is None:
            left["running"] += 1
            continue
        p = info.params(t)
        lr, wd = p.get("lr"), p.get("weight_decay")
        arm = p.get("optimizer", "lion") == optimizer
        if arm and lr and wd and lr > 0 and wd > 0 and math.isfinite(t.value):
            rows.append((t, p))
        else:
            left["other"] += 1
    return rows, left


def _range(dim: schemas.Dimension | None, seen: list[float]) -> list[float]:
    """A dimension's positive range, widened to the values seen (a range starting at 0 starts
    at the smallest positive value seen)."""
    positive = [v for v in seen if v > 0]
    lo, hi = min(positive), max(positive)
    if dim is not None:
        vals = [v for v in dim.values() if v > 0]
        if vals:
            lo, hi = min(min(vals), lo), max(max(vals), hi)
    return [lo, hi]


def _box(
    info: SweepInfo, rows: list[tuple[FrozenTrial, dict[str, Any]]]
) -> tuple[Box, dict[str, list[float]]]:
    """The search box in (ln lr, ln weight decay or ln lr·weight decay), and as given."""
    space = info.spec.space
    lr = _range(space.lr, [p["lr"] for _, p in rows])
    if space.lr_wd_product is not None:
        second, name = (
            _range(space.lr_wd_product, [p["lr"] * p["weight_decay"] for _, p in rows]),
            "lr_wd_product",
        )
    else:
        second, name = (
            _range(space.weight_decay, [p["weight_decay"] for _, p in rows]),
            ("weight_decay"),
        )
    ln = [math.log(v) for v in (*lr, *second)]
    return Box(*ln, name), {"lr": lr, name: second}


def _observations(
    info: SweepInfo,
    rows: list[tuple[FrozenTrial, dict[str, Any]]],
    ref: dict[str, Any],
    sign: float,
) -> Observations:
    """Design data: ln lr, ln weight decay, the other swept params' columns, the objective."""
    cols: list[np.ndarray] = []
    ref_cols: list[float] = []
    for name, dim in info.spec.space.dimensions().items():
        if name in ("lr", "weight_decay", "lr_wd_product") or dim.is_fixed:
            continue
        raw = [p.get(name) for _, p in rows]
        if any(v is None for v in raw):
            continue
        if dim.choices is not None:
            levels = sorted(set(raw))
            for level in levels[1:]:
                cols.append(np.array([1.0 if v == level else 0.0 for v in raw]))
                ref_cols.append(1.0 if ref.get(name) == level else 0.0)
            continue
        f = math.log if dim.log else float
        vals = np.array([f(v) for v in raw])
        centre, spread = float(vals.mean()), float(vals.std()) or 1.0
        u = (vals - centre) / spread
        r = (f(ref[name]) - centre) / spread
        cols += [u, u * u]
        ref_cols += [r, r * r]
    n = len(rows)
    return Observations(
        x=np.array([math.log(p["lr"]) for _, p in rows]),
        y=np.array([math.log(p["weight_decay"]) for _, p in rows]),
        z=np.column_stack(cols) if cols else np.zeros((n, 0)),
        value=np.array([sign * t.value for t, _ in rows]),
        z_ref=np.array(ref_cols),
    )


def transfer(
    rule: schemas.RuleOut, from_width: float, to_width: float, width_rule: str
) -> schemas.Transfer:
    """Move a sweep's answer from its width to ``to_width`` under a named width rule.

    With a ``valley`` verdict the fitted optimum's lr and weight decay both move. Otherwise
    only the lr moves (the optimum's, or the best config's when the fit says nothing) and
    the weight decay stays the best config's, since the data did not pin down how it trades
    off with lr.
    """
    a, b = WIDTH_RULES[width_rule]
    ratio = to_width / from_width
    law = f"lr ∝ width^{a:g}, weight decay ∝ width^{b:g}"
    best = rule.best
    if rule.verdict == "valley" and rule.optimum is not None:
        lr, wd = rule.optimum.lr * ratio**a, rule.optimum.weight_decay * ratio**b
        note = (
            f"the fitted optimum moved from width {from_width:g} to {to_width:g} under the "
            f"'{width_rule}' rule ({law}); one sweep cannot test the width rule itself — a "
            "width ladder does"
        )
        return schemas.Transfer(
            from_width=from_width,
            to_width=to_width,
            width_rule=width_rule,
            lr=lr,
            weight_decay=wd,
            moved=["lr", "weight_decay"],
            note=note,
        )
    if rule.verdict in ("lr_only", "boundary") and rule.optimum is not None:
        base_lr, source = rule.optimum.lr, "the fitted optimum's lr"
    else:
        base_lr, source = best.lr, f"the best config's lr (trial {best.trial_number})"
    note = (
        f"only the lr moved ({source}, under the '{width_rule}' rule: {law}); the verdict is "
        f"'{rule.verdict}' — {rule.reason} — so the data do not say how weight decay trades "
        f"off with lr, and the weight decay is the best config's, unmoved"
    )
    return schemas.Transfer(
        from_width=from_width,
        to_width=to_width,
        width_rule=width_rule,
        lr=base_lr * ratio**a,
        weight_decay=best.weight_decay,
        moved=["lr"],
        note=note,
    )


def _best_note(
    groups: list[ConfigRuns], best: ConfigRuns, noise: Noise, tied: list[int], sign: float
) -> str:
    """Plain sentences on how the best config's value was estimated and how far the ranking
    can be trusted."""
    parts = []
    n = len(best.held_out)
    if n:
        ranked = ", ".join(str(t.number) for t in best.ranked_on)
        parts.append(
            f"the best config's value is the mean of its {n} run{'s' if n > 1 else ''} that took "
            f"no part in ranking it (it was ranked on trial{'s' if len(best.ranked_on) > 1 else ''}"
            f" {ranked}), so it is not biased by having won"
        )
    else:
        parts.append(
            "the best config ran once: its value is the run that ranked it first, likely "
            "luckier than the config"
        )
    if noise.sd is None:
        parts.append(
            "the seed noise is not measured (no config ran with more than one seed), so the "
            "ranking may be luck: re-evaluate the top configs (spec field reevaluate)"
        )
        return "; ".join(parts)
    if len(tied) > 1:
        parts.append(
            f"the top {len(tied)} configs cannot be told apart at this noise "
            f"(seed sd {noise.sd:.3g}): any of them is as good a pick"
        )
    else:
        parts.append(
            f"the best config leads the others by more than the noise (seed sd {noise.sd:.3g})"
        )
    luckier = [g for g in groups if not g.held_out and sign * g.mean < sign * best.mean]
    if luckier and best.held_out:
        g = min(luckier, key=lambda g: sign * g.mean)
        parts.append(
            f"trial {g.first.number} has a better single value ({g.mean:.4g}) but ran with "
            "one seed only"
        )
    return "; ".join(parts)


def config_out(info: SweepInfo, g: ConfigRuns, noise: Noise) -> schemas.ConfigOut:
    """A ranked config as /best shows it: its value over its held-out runs with a 90% interval
    from the pooled seed noise, and the runs the ranking used."""
    runs = g.estimated_on
    values = [float(t.value) for t in runs]
    mean = g.mean
    ci = None
    if noise.sd is not None:
        half = noise.t() * noise.sd / math.sqrt(len(values))
        ci = [mean - half, mean + half]
    out = config(info, g.first)
    return out.model_copy(
        update={
            "value": mean,
            "mean": mean,
            "n_seeds": len(values),
            "sd": float(np.std(values, ddof=1)) if len(values) >= 2 else None,
            "ci": ci,
            "values": values,
            "trial_numbers": [t.number for t in runs],
            "selection_value": g.selection_value,
            "confirmed": len(g.fresh) >= 2,
            "held_out": bool(g.held_out),
            "ranked_on": [t.number for t in g.ranked_on],
            "rank_value": g.rank_value,
        }
    )


def leader(info: SweepInfo, done: list[FrozenTrial]) -> schemas.BestSoFar | None:
    """The config /best ranks first, in the short form sweep lists show (None before any
    trial completed), and apart from it the best single run (often a lucky seed)."""
    done = [t for t in done if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    groups, noise = ranked_configs(info, done)
    top = config_out(info, groups[0], noise)
    single = min(done, key=lambda t: (info.sign * t.value, t.number))
    return schemas.BestSoFar(
        trial_number=top.trial_number,
        value=top.mean,
        params=top.params,
        mean=top.mean,
        n_seeds=top.n_seeds,
        ci=top.ci,
        held_out=top.held_out,
        best_single_value=float(single.value),
        best_single_trial_number=single.number,
    )


def config(info: SweepInfo, t: FrozenTrial) -> schemas.ConfigOut:
    """A trial as ready-to-use config; unswept warmup/batch size from what the worker used."""
    p = info.params(t)
    used = t.user_attrs.get("config") or {}
    value = float(t.value) if t.value is not None else math.nan
    return schemas.ConfigOut(
        trial_number=t.number,
        value=value,
        mean=value,
        n_seeds=1,
        sd=None,
        ci=None,
        values=[value],
        trial_numbers=[t.number],
        selection_value=None,
        confirmed=False,
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
