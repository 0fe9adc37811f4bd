"""What a sweep's results say: the best configs with their seed noise, the lr-versus-decay
answer with intervals and a verdict, its transfer to another width, and importances."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from service import optuna_tables as ot
from service import schemas
from service.catalog import Catalog, SweepInfo, config_key
from service.db import Database
from service.errors import Conflict, Invalid, NotFound
from service.ladder_fit import RULES
from service.lazy import scipy_stats
from service.surface import (
    LEVEL,
    Box,
    Observations,
    Stability,
    Surface,
    beyond_basin,
    fit_surface,
    stability_edge,
)

WIDTH_RULES = RULES
"""The named width rules (:data:`service.ladder_fit.RULES`). Which one holds is what a width
ladder measures; one sweep cannot tell."""

METHOD = (
    "quadratic response surface in (ln lr, ln weight decay) — additive, without the lr × "
    "weight-decay term, for a one-at-a-time design or too few trials — with other swept "
    "parameters entering only when they lower the BIC; trials weighted down by their fitted "
    "excess over the optimum; answers only inside the fitted trials' region and below the lr "
    "where training diverges; 90% intervals from 400 bootstrap refits"
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


def _mean(values: list[float]) -> float:
    """The mean of ``values`` as numpy computes it (one value is itself, the common case)."""
    return float(values[0]) if len(values) == 1 else float(np.mean(values))


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
        return self._parts

    @functools.cached_property
    def _parts(self) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """The split, made once, on first use (after :func:`group_configs` added every run)."""
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
        return _mean([t.value for t in self.ranked_on])

    @property
    def mean(self) -> float:
        """The config's value: mean of :attr:`estimated_on`."""
        return _mean([t.value for t in self.estimated_on])

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
        return float(scipy_stats().t.ppf(0.5 + LEVEL / 2, self.df))


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
            trials=min(cfg.top_k, info.spec.n_trials) * cfg.seeds,  # one set per config at most
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
        self._surfaces: dict[tuple[int, str], tuple[Any, Surface]] = {}

    def all_trials(self, info: SweepInfo) -> list[FrozenTrial]:
        """Every trial of the sweep (404 once the sweep is deleted)."""
        return self.catalog.trials(info)

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
        groups, noise = self.shared(info, "ranking", lambda: self._ranking(info))
        sign = info.sign
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
        floor = loss_floor(info, groups)
        return schemas.BestOut(
            best=config_out(info, best, noise, floor),
            top=[config_out(info, g, noise, floor) for g in top],
            noise_sd=noise.sd,
            noise_df=noise.df,
            tied=tied,
            note=_best_note(groups, best, noise, tied, sign),
            reevaluation=reevaluation_out(info, attrs, counts),
            method=BEST_METHOD,
        )

    def shared(self, info: SweepInfo, what: str, compute: Callable[[], Any], *key: Any) -> Any:
        """An answer about the sweep computed once per change of its trials and shared by
        every caller meanwhile (:class:`service.catalog.SharedAnswers`)."""
        stamp = self.catalog.fingerprint(info)
        return self.catalog.answers.get((what, info.id, *key), stamp, compute)

    def _ranking(self, info: SweepInfo) -> tuple[list[ConfigRuns], Noise]:
        """The sweep's configs ranked (:func:`ranked_configs`); 409 with no complete trial."""
        done = self.complete_trials(info)
        if not done:
            raise Conflict(f"sweep {info.id} has no complete trial yet")
        return ranked_configs(info, done)

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
        out = self.shared(info, "rule", lambda: self._rule(info)).model_copy()
        out.width_param, out.width = self._width(info)
        if to_width is not None:
            start = from_width if from_width is not None else out.width
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

    def _rule(self, info: SweepInfo) -> schemas.RuleOut:
        """The rule at the sweep's own width (what :meth:`scaling_rule` shares between calls)."""
        data = _rule_data(info, self.all_trials(info))
        if not data.rows:
            raise Conflict(
                f"sweep {info.id} has no complete Lion trial with lr > 0 and weight decay >= 0 "
                "that trained (did not diverge) to fit the rule to"
            )
        sign = info.sign
        groups, noise = ranked_configs(info, [t for t, _ in data.rows])
        best = groups[0]
        box, box_out = _box(info, data.fitted)
        surface = self._surface(info, data, best, box, sign, noise)
        return schemas.RuleOut(
            **_rule_fields(surface, data, sign, noise),
            box=box_out,
            best=schemas.BestPoint(
                trial_number=best.first.number,
                lr=best.params["lr"],
                weight_decay=best.params["weight_decay"],
                value=best.mean,
            ),
            width=None,
            width_param=None,
            transfer=None,
        )

    def fitted(
        self, sweep_id: int, optimizer: str = "lion"
    ) -> tuple[Surface, ConfigRuns, float] | None:
        """The sweep's fitted surface over one optimizer's trials, its best config and the
        objective's sign (+1: lower is better), or None while it has no such trial to fit."""
        info = self.catalog.info(sweep_id)

        def fit() -> tuple[Surface, ConfigRuns, float] | None:
            data = _rule_data(info, self.all_trials(info), optimizer)
            if not data.rows:
                return None
            groups, noise = ranked_configs(info, [t for t, _ in data.rows])
            box, _ = _box(info, data.fitted)
            surface = self._surface(info, data, groups[0], box, info.sign, noise)
            return surface, groups[0], info.sign

        return self.shared(info, "fit", fit, optimizer)

    def lion_points(self, sweep_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The lr, weight decay and value (lower is better) of each complete Lion trial of
        the sweep that trained (diverged runs and weight decay 0 left out)."""
        info = self.catalog.info(sweep_id)

        def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            data = _rule_data(info, self.all_trials(info), "lion")
            rows = [
                (float(p["lr"]), float(p["weight_decay"]), info.sign * float(t.value))
                for t, p in data.rows
                if p.get("lr", 0) > 0 and p.get("weight_decay", 0) > 0
            ]
            if not rows:
                return np.empty(0), np.empty(0), np.empty(0)
            lr, wd, value = (np.array(c) for c in zip(*rows, strict=True))
            return lr, wd, value

        return self.shared(info, "lion points", compute)

    def _surface(
        self,
        info: SweepInfo,
        data: RuleData,
        best: ConfigRuns,
        box: Box,
        sign: float,
        noise: Noise,
    ) -> Surface:
        """The fitted surface, kept while the sweep's trials stay the same."""
        stamp = (
            len(data.fitted),
            len(data.diverged),
            max(t.number for t, _ in data.fitted),
            tuple(sorted(best.params.items())),
        )
        key = (info.id, data.optimizer)
        with self._lock:
            hit = self._surfaces.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        obs = _observations(info, data, best, sign, noise)
        surface = fit_surface(obs, box)
        with self._lock:
            if len(self._surfaces) > 256:
                self._surfaces.clear()
            self._surfaces[key] = (stamp, surface)
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

        def compute() -> schemas.ImportancesOut:
            if len(self.complete_trials(info)) < 2:
                raise Conflict("importances need at least 2 complete trials")
            try:
                imp = optuna.importance.get_param_importances(self.catalog.study(info))
            except KeyError:  # deleted meanwhile
                raise NotFound(f"sweep {sweep_id} not found") from None
            except (ValueError, RuntimeError) as e:
                raise Conflict(f"cannot compute importances: {e}") from None
            return schemas.ImportancesOut(importances={k: float(v) for k, v in imp.items()})

        return self.shared(info, "importances", compute)


LEFT_OUT_REASON = (
    "diverged trials (a non-finite value, a 'diverged' reason, or a value beyond the basin: "
    "above a gap in the sorted values at least twice as wide as the whole basin below it) "
    "are left out of the surface and estimate the stability edge instead; pruned trials "
    "enter with a final value imputed from their last reported value (a straight line "
    "fitted on the complete trials' values at that step, used only when it explains at "
    "least half their final values' variance), and the rest are left out ('pruned'); "
    "failed and unfinished trials are left out too, and so are those of another optimizer "
    "arm or without an lr / weight decay ('other')"
)

MIN_CALIBRATION = 6
"""Complete trials with a value at a pruned trial's last step needed to impute its final."""
MIN_CALIBRATION_R2 = 0.5


@dataclass
class RuleData:
    """A sweep's trials as the rule sees them: the complete ones that trained, pruned ones
    with an imputed final value, diverged ones, and counts of the rest."""

    optimizer: str
    rows: list[tuple[FrozenTrial, dict[str, Any]]] = field(default_factory=list)
    imputed: list[tuple[FrozenTrial, dict[str, Any], float]] = field(default_factory=list)
    diverged: list[tuple[FrozenTrial, dict[str, Any]]] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)
    stability: Stability | None = None
    design: str = "surface"
    design_note: str = ""
    wd_scale: str = "log"
    notes: list[str] = field(default_factory=list)
    n_zero: int = 0

    @property
    def fitted(self) -> list[tuple[FrozenTrial, dict[str, Any]]]:
        """Every trial the surface is fitted to (complete, then imputed)."""
        return self.rows + [(t, p) for t, p, _ in self.imputed]

    def values(self, sign: float) -> np.ndarray:
        """The fitted trials' values, lower is better."""
        own = [sign * float(t.value) for t, _ in self.rows]
        return np.array(own + [sign * v for _, _, v in self.imputed])


def _rule_rows(
    info: SweepInfo, trials: list[FrozenTrial], optimizer: str = "lion"
) -> tuple[list[tuple[FrozenTrial, dict[str, Any]]], dict[str, int]]:
    """The complete trials of one optimizer that trained (did not diverge), and counts of
    those left out (see :func:`_rule_data`)."""
    data = _rule_data(info, trials, optimizer)
    return data.rows, data.left_out


def _rule_data(info: SweepInfo, trials: list[FrozenTrial], optimizer: str = "lion") -> RuleData:
    """Sort one optimizer's trials for the rule: trained, diverged (non-finite, a 'diverged'
    reason, or beyond the basin: :func:`service.surface.beyond_basin`), pruned (imputed where
    the complete trials allow: :func:`_impute`), and the rest; then the stability edge and
    the design (one-at-a-time or a surface design)."""
    data = RuleData(optimizer)
    left = {"pruned": 0, "failed": 0, "running": 0, "diverged": 0, "other": 0}
    complete, pruned = [], []
    for t in trials:
        p = info.params(t)
        lr, wd = p.get("lr"), p.get("weight_decay")
        mine = p.get("optimizer", "lion") == optimizer
        if not mine or lr is None or wd is None or not lr > 0 or not wd >= 0:
            left["other"] += 1
            continue
        said = t.user_attrs.get("reason") == "diverged" or bool(t.user_attrs.get("diverged"))
        if t.state in (TrialState.PRUNED, TrialState.FAIL) and said:
            data.diverged.append((t, p))
        elif t.state == TrialState.PRUNED:
            pruned.append((t, p))
        elif t.state == TrialState.FAIL:
            left["failed"] += 1
        elif t.state != TrialState.COMPLETE or t.value is None:
            left["running"] += 1
        elif said or not math.isfinite(t.value):
            data.diverged.append((t, p))
        else:
            complete.append((t, p))
    if complete:
        far = beyond_basin(np.array([info.sign * float(t.value) for t, _ in complete]))
        data.diverged += [r for r, out in zip(complete, far, strict=True) if out]
        complete = [r for r, out in zip(complete, far, strict=True) if not out]
        if far.any():
            data.notes.append(
                f"{int(far.sum())} complete trial(s) with values beyond the basin (above a gap "
                "at least twice as wide as the basin itself) count as diverged"
            )
    data.rows = complete
    data.imputed, n_pruned_left = _impute(complete, pruned, info.sign)
    left["pruned"] = n_pruned_left
    left["diverged"] = len(data.diverged)
    data.left_out = left
    if data.imputed:
        data.notes.append(
            f"{len(data.imputed)} pruned trial(s) entered with a final value imputed from the "
            "value they reported when pruned"
        )
    ok_lr = [p["lr"] for _, p in data.fitted]
    data.stability = stability_edge(np.array(ok_lr), np.array([p["lr"] for _, p in data.diverged]))
    data.n_zero = sum(1 for _, p in data.fitted if p["weight_decay"] == 0)
    _design(info, data)
    return data


def _impute(
    complete: list[tuple[FrozenTrial, dict[str, Any]]],
    pruned: list[tuple[FrozenTrial, dict[str, Any]]],
    sign: float,
) -> tuple[list[tuple[FrozenTrial, dict[str, Any], float]], int]:
    """Pruned trials with a final value imputed, and how many were left out.

    A pruned trial stopped at its last reported step ``s`` because it trailed there. Its final
    value is read off a straight line ``final ≈ a + b·value_at_s`` fitted on the complete
    trials that reported at ``s`` (at least ``MIN_CALIBRATION`` of them, ``b > 0`` and
    ``R² ≥ MIN_CALIBRATION_R2``): the pruner's own premise (the ranking at ``s`` predicts the
    ranking at the end), checked on the trials that ran to the end. Without such a line the
    trial is left out.
    """
    out, left = [], 0
    lines: dict[int, tuple[float, float] | None] = {}
    for t, p in pruned:
        if not t.intermediate_values:
            left += 1
            continue
        s = max(t.intermediate_values)
        if s not in lines:
            pairs = [
                (float(c.intermediate_values[s]), float(c.value))
                for c, _ in complete
                if s in c.intermediate_values and math.isfinite(c.intermediate_values[s])
            ]
            lines[s] = None
            if len(pairs) >= MIN_CALIBRATION:
                a = np.array(pairs)
                if np.ptp(a[:, 0]) > 0:
                    b, c0 = np.polyfit(a[:, 0], a[:, 1], 1)
                    r = np.corrcoef(a[:, 0], a[:, 1])[0, 1]
                    if b > 0 and r * r >= MIN_CALIBRATION_R2:
                        lines[s] = (float(c0), float(b))
        line = lines[s]
        v = t.intermediate_values[s]
        if line is None or not math.isfinite(v):
            left += 1
            continue
        out.append((t, p, line[0] + line[1] * float(v)))
    return out, left


def _design(info: SweepInfo, data: RuleData) -> None:
    """One-at-a-time or a surface design, and the weight-decay scale, into ``data``.

    One-at-a-time: every trial (diverged ones included) differs from a base config — each
    swept parameter's most common value — in at most one parameter, and lr and weight decay
    each vary. Its weight decay is fitted on a linear scale when the sweep searched it so
    (a range without ``log``, or levels evenly spaced or including 0).
    """
    dims = {
        name: dim
        for name, dim in info.spec.space.dimensions().items()
        if not dim.is_fixed and name != "lr_wd_product"
    }
    dims.setdefault("lr", info.spec.space.lr)
    dims.setdefault("weight_decay", info.spec.space.weight_decay)
    params = [p for _, p in data.fitted + data.diverged]
    if not params:
        return
    names = [n for n in dims if all(n in p for p in params)]
    base = {}
    for name in names:
        counts: dict[Any, int] = {}
        for p in params:
            counts[p[name]] = counts.get(p[name], 0) + 1
        base[name] = max(counts, key=lambda v: counts[v])
    varied = {n for n in names for p in params if p[n] != base[n]}
    one_at_a_time = (
        info.spec.space.lr_wd_product is None
        and len(params) >= 3
        and {"lr", "weight_decay"} <= varied
        and all(sum(p[n] != base[n] for n in names) <= 1 for p in params)
    )
    if not one_at_a_time:
        data.design = "surface"
        data.design_note = "lr and weight decay vary together: the full surface is fitted"
        data.wd_scale = "log"
        return
    data.design = "one_at_a_time"
    data.wd_scale = "linear" if _linear(info.spec.space.weight_decay, params) else "log"
    data.design_note = (
        "one-at-a-time design: every trial changes at most one parameter of the base config "
        + ", ".join(f"{n}={base[n]:g}" for n in names)
        + "; each axis is fitted on its own (no lr × weight-decay term), so the valley's slope "
        "is not identifiable — a small 2-D block of trials around the optimum (e.g. 3 lrs × 3 "
        "weight decays) would identify it"
    )


def _linear(dim: schemas.Dimension | None, params: list[dict[str, Any]]) -> bool:
    """Whether weight decay was searched on a linear scale: a range without ``log``, or
    levels that include 0 or are closer to evenly spaced than to geometrically spaced."""
    if dim is not None and dim.choices is None and dim.value is None:
        return not dim.log
    levels = sorted({float(p["weight_decay"]) for p in params})
    if levels and levels[0] <= 0:
        return True
    if len(levels) < 3:
        return False
    lin, geo = np.diff(levels), np.diff(np.log(levels))
    return float(lin.std() / lin.mean()) <= float(geo.std() / geo.mean())


def _range(dim: schemas.Dimension | None, seen: list[float]) -> list[float]:
    """A dimension's positive range, widened to the values seen (a range starting at 0 starts
    at the smallest positive value seen)."""
    positive = [v for v in seen if v > 0]
    if not positive:
        return [0.0, 0.0]
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
    ln = [math.log(v) if v > 0 else 0.0 for v in (*lr, *second)]
    return Box(*ln, name), {"lr": lr, name: second}


def _level_transform(dim: schemas.Dimension, levels: list[float]) -> Callable[[float], float]:
    """ln for a log range or positive, geometrically spaced levels; else the value itself."""
    if dim.log:
        return math.log
    if dim.choices is not None and len(levels) >= 3 and min(levels) > 0:
        lin, geo = np.diff(levels), np.diff(np.log(levels))
        if float(geo.std() / geo.mean()) < float(lin.std() / lin.mean()):
            return math.log
    return float


def _observations(
    info: SweepInfo, data: RuleData, best: ConfigRuns, sign: float, noise: Noise
) -> Observations:
    """Design data: ln lr, the weight-decay coordinate, the other swept params' candidate
    columns (a linear term, and a quadratic one for 3+ levels), the objective (``noise``: the
    pooled seed noise of the trials that trained, :func:`pooled_noise`)."""
    rows = data.fitted
    ref = best.params
    cols: list[np.ndarray] = []
    ref_cols: list[float] = []
    blocks: list[tuple[str, list[int]]] = []
    for name, dim in info.spec.space.dimensions().items():
        if name in ("lr", "weight_decay", "lr_wd_product") or dim.is_fixed:
            continue
        raw = [p.get(name) for _, p in rows]
        if any(v is None for v in raw) or ref.get(name) is None:
            continue
        levels = sorted({float(v) for v in raw})
        if len(levels) < 2:
            continue
        f = _level_transform(dim, levels)
        vals = np.array([f(v) for v in raw])
        centre, spread = float(vals.mean()), float(vals.std()) or 1.0
        u = (vals - centre) / spread
        r = (f(ref[name]) - centre) / spread
        start = len(cols)
        cols.append(u)
        ref_cols.append(r)
        if len(levels) >= 3:
            cols.append(u * u)
            ref_cols.append(r * r)
        blocks.append((name, list(range(start, len(cols)))))
    n = len(rows)
    wd = np.array([float(p["weight_decay"]) for _, p in rows])
    linear = data.wd_scale == "linear"
    y = wd if linear else np.log(np.where(wd > 0, wd, 1.0))
    if info.spec.space.lr_wd_product is not None:
        y = np.log(np.where(wd > 0, wd, 1.0))
    values = data.values(sign)
    raw_values = sign * values
    stab = data.stability
    cap = stab.lr_stable_max if stab is not None else None
    return Observations(
        x=np.array([math.log(p["lr"]) for _, p in rows]),
        y=y,
        z=np.column_stack(cols) if cols else np.zeros((n, 0)),
        value=values,
        z_ref=np.array(ref_cols),
        z_blocks=blocks,
        nodecay=None if linear else wd <= 0,
        design=data.design,  # type: ignore[arg-type]
        wd_scale="linear" if linear else "log",
        x_cap=math.log(cap) if cap else None,
        lr_diverged_min=stab.lr_diverged_min if stab is not None else None,
        best_mean=sign * best.mean,
        best_half=_half_width(noise, best),
        nonneg=sign > 0 and bool((raw_values >= 0).all()),
        sign=sign,
    )


def _half_width(noise: Noise, best: ConfigRuns) -> float:
    """The half-width of the best config mean's 90% interval from the pooled seed noise of
    the trials that trained (0 when no config ran twice)."""
    if noise.sd is None:
        return 0.0
    return noise.t() * noise.sd / math.sqrt(len(best.estimated_on))


def _rule_fields(surface: Surface, data: RuleData, sign: float, noise: Noise) -> dict[str, Any]:
    """The RuleOut fields that come from the fit, showing only what its verdict allows."""
    shown = surface.shown
    opt = None
    if surface.lr is not None and {"lr", "weight_decay"} & shown:
        show_v = "value" in shown
        opt = schemas.Estimate(
            lr=surface.lr.value if "lr" in shown else None,
            weight_decay=surface.weight_decay.value if "weight_decay" in shown else None,
            value=sign * surface.value.value if show_v else None,
            lr_ci=surface.lr.pair() if "lr" in shown else None,
            weight_decay_ci=surface.weight_decay.pair() if "weight_decay" in shown else None,
            value_ci=sorted(sign * v for v in surface.value.pair()) if show_v else None,
        )
    no_decay = None
    nd = surface.no_decay
    if nd is not None and opt is not None and "weight_decay" in shown:
        no_decay = schemas.NoDecayOut(
            n=nd["n"],
            mean=sign * nd["mean"],
            value=sign * nd["value"],
            value_ci=sorted(sign * v for v in nd["value_ci"]),
            difference=sign * nd["difference"],
            difference_ci=sorted(sign * v for v in nd["difference_ci"]),
            note=nd["note"],
        )
    notes = list(data.notes)
    if surface.scale_note:
        notes.append(surface.scale_note)
    if no_decay is None and data.n_zero:
        how = (
            "as their own 'no decay' level"
            if surface.wd_scale == "log"
            else "as points of the linear weight-decay axis"
        )
        notes.append(f"{data.n_zero} trial(s) with weight decay 0 entered the fit {how}")
    stab = data.stability
    show_slope = surface.slope is not None and "slope" in shown
    return {
        "verdict": surface.verdict,
        "reason": surface.reason,
        "n": surface.n,
        "left_out": data.left_out,
        "left_out_reason": LEFT_OUT_REASON,
        "method": METHOD,
        "slope": surface.slope.value if show_slope else None,
        "slope_ci": surface.slope.pair() if show_slope else None,
        "product": surface.product.value if show_slope and surface.product else None,
        "product_ci": surface.product.pair() if show_slope and surface.product else None,
        "alpha0": surface.alpha0.value if show_slope and surface.alpha0 else None,
        "alpha0_ci": surface.alpha0.pair() if show_slope and surface.alpha0 else None,
        "optimum": opt,
        "on_boundary": surface.on_boundary,
        "boundary_edges": surface.boundary_edges,
        "noise_sd": noise.sd,
        "residual_sd": surface.residual_sd,
        "valley": [schemas.ValleyPoint(**p) for p in surface.valley if "valley" in shown],
        "stability": schemas.StabilityOut(
            lr_diverged_min=stab.lr_diverged_min,
            lr_stable_max=stab.lr_stable_max,
            n_diverged=stab.n_diverged,
            n_isolated=stab.n_isolated,
            note=stab.note,
        )
        if stab is not None
        else None,
        "design": data.design,
        "design_note": data.design_note,
        "noise_source": (
            f"repeated seeds: sd pooled over configs run more than once ({noise.df} df); the "
            "intervals come from the bootstrap"
            if noise.sd is not None
            else "fit residuals: no config ran with more than one seed, so the noise is the "
            "fit's residual sd"
        ),
        "n_imputed": len(data.imputed),
        "n_coef": surface.n_coef,
        "n_min": surface.n_min,
        "n_configs": surface.n_configs,
        "value_scale": surface.value_scale,
        "terms": surface.terms,
        "weight_decay_scale": surface.wd_scale,
        "support": surface.support,
        "no_decay": no_decay,
        "value_note": surface.value_note if opt is not None and opt.value is not None else None,
        "notes": notes,
    }


def transfer(
    rule: schemas.RuleOut, from_width: float, to_width: float, width_rule: str
) -> schemas.Transfer:
    """Move a sweep's answer from its width to ``to_width`` under a named width rule.

    With a ``valley`` verdict the fitted optimum's lr and weight decay both move. Otherwise
    only the lr moves (the optimum's when the verdict shows one, else the best config's —
    both below the stability edge, never beyond it) and
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
    if rule.optimum is not None and rule.optimum.lr is not None:
        base_lr, source = rule.optimum.lr, "the fitted optimum's lr"
    else:
        base_lr, source = best.lr, f"the best config's lr (trial {best.trial_number})"
    if rule.stability is not None and rule.stability.lr_diverged_min is not None:
        source += (
            f"; at this width runs diverged from lr {rule.stability.lr_diverged_min:.3g} up, "
            "and the moved lr keeps the same distance below that edge only if the width rule "
            "moves the edge too"
        )
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


def loss_floor(info: SweepInfo, groups: list[ConfigRuns]) -> float | None:
    """0 when the objective is a loss (minimised, and no run of the sweep went below 0): the
    floor its intervals stop at, as the fitted surface's do; else None."""
    if info.sign > 0 and all(v >= 0 for g in groups for v in g.values):
        return 0.0
    return None


def config_out(
    info: SweepInfo, g: ConfigRuns, noise: Noise, floor: float | None = None
) -> schemas.ConfigOut:
    """A ranked config as /best shows it: its value over its held-out runs with a 90% interval
    from the pooled seed noise (not below ``floor``, see :func:`loss_floor`), and the runs the
    ranking used."""
    runs = g.estimated_on
    values = [float(t.value) for t in runs]
    mean = g.mean
    ci = None
    if noise.sd is not None:
        half = noise.t() * noise.sd / math.sqrt(len(values))
        ci = [mean - half, mean + half]
        if floor is not None:
            ci[0] = max(ci[0], floor)
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
    top = config_out(info, groups[0], noise, loss_floor(info, groups))
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
