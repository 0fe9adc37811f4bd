"""What the client commands print, from the server's JSON answers: rich tables and lines of
text, no HTTP.

The functions that return a table or text leave printing to the caller; the ``print_*`` ones
print a whole answer (several tables and notes) to the commands' console
(``worker.cli.console``). Every table folds a value too long for its column rather than cut
it, so that nothing a user needs is hidden at 80 columns.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.markup import escape
from rich.table import Table

from worker.cli import best_text, console, fmt, warn


class FoldTable(Table):
    """A table whose cells fold a value too long for its column onto the next line rather
    than cut it with an ellipsis: at 80 columns nothing a user needs is hidden."""

    def add_column(self, *args: Any, overflow: Any = "fold", **kwargs: Any) -> None:
        """Add a column as :class:`rich.table.Table` does, folding (not cutting) by default."""
        super().add_column(*args, overflow=overflow, **kwargs)


def new_table(title: str) -> Table:
    """A table under ``title``, at least as wide as the title so that it stays on one line,
    whose cells fold rather than cut."""
    return FoldTable(title=title, title_justify="left", min_width=len(title))


def print_then_link(markup: str, link: str) -> None:
    """Print ``markup`` and then ``link`` on the same line when both fit the terminal, else
    the link on a line of its own: either way never broken (it is there to be copied)."""
    from rich.text import Text

    text = Text.from_markup(markup)
    if text.cell_len + 1 + len(link) <= console.width:
        console.print(text, link, highlight=False, soft_wrap=True)
    else:
        console.print(text, highlight=False)
        console.print(link, highlight=False, soft_wrap=True)


def interval_text(ci: list[float] | None) -> str:
    """``lo–hi`` of a 90% interval (``lo to hi`` when a bound is negative), or ``-``."""
    if not ci:
        return "-"
    sep = " to " if min(ci) < 0 else "–"
    return f"{fmt(ci[0])}{sep}{fmt(ci[1])}"


def estimate_text(value: Any, ci: list[float] | None, stacked: bool = False) -> str:
    """``value (lo–hi)`` of an estimate and its 90% interval (``stacked``: the interval on a
    second line, for narrow table cells), ``value`` without one, or ``-``."""
    if value is None:
        return "-"
    if not ci:
        return fmt(value)
    return (
        f"{fmt(value)}\n{interval_text(ci)}" if stacked else f"{fmt(value)} ({interval_text(ci)})"
    )


def print_best(answer: dict[str, Any]) -> None:
    """Print the top configs (seed means, 90% intervals, ties) and the best one's kwargs."""
    table = new_table("Best configs (by seed mean)")
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("mean [90% CI]", justify="right")
    table.add_column("seeds", justify="right", no_wrap=True)
    # one column for the config, which may wrap: the table fits an 80-column terminal
    table.add_column("config", justify="left")
    top = answer.get("top") or [answer["best"]]
    tied = set(answer.get("tied") or [])
    for rank, cfg in enumerate(top, start=1):
        kw = cfg.get("optimizer_kwargs") or {}
        betas = ", ".join(fmt(b) for b in kw.get("betas", []))
        mark = "=" if cfg.get("trial_number") in tied and len(tied) > 1 else ""
        ci = cfg.get("ci")
        config = (
            f"{cfg.get('optimizer', 'lion')} lr {fmt(kw.get('lr'))} "
            f"wd {fmt(kw.get('weight_decay'))} betas ({betas}) "
            f"warmup {fmt(cfg.get('warmup_steps'))} batch {fmt(cfg.get('batch_size'))}"
        )
        table.add_row(
            f"{rank}{mark}",
            str(cfg.get("trial_number")),
            fmt(cfg.get("mean", cfg.get("value"))) + (f" [{interval_text(ci)}]" if ci else ""),
            str(cfg.get("n_seeds", 1)),
            config,
        )
    console.print(table)
    noise = answer.get("noise_sd")
    if noise is not None:
        console.print(
            f"seed noise sd {fmt(noise)} ({answer.get('noise_df')} df); '=' marks configs the "
            "data cannot tell apart from the best",
            highlight=False,
        )
    if answer.get("note"):
        console.print(escape(answer["note"]), highlight=False)
    re = answer.get("reevaluation") or {}
    if re.get("status") in ("queued", "pending", "skipped"):
        done = (
            f" ({re.get('finished')}/{re.get('trials')} done)" if re["status"] == "queued" else ""
        )
        why = f": {escape(re['reason'])}" if re.get("reason") else ""
        console.print(f"re-evaluation {re['status']}{done}{why}", highlight=False)
    best = answer["best"]
    cls = "torch.optim.AdamW" if best.get("optimizer") == "adamw" else "optim.Lion"
    console.print(
        f"best optimizer kwargs ({cls}; 6 significant digits, --json for all):", highlight=False
    )
    # one line, never wrapped by rich, and short enough to stay whole in 80 columns
    console.print(kwargs_line(best.get("optimizer_kwargs")), highlight=False, soft_wrap=True)


KWARGS_DIGITS = 6
"""Significant digits of the copyable kwargs line (the sampled values carry noise digits)."""


def kwargs_line(kwargs: Any) -> str:
    """Optimizer kwargs as one line of JSON, floats to :data:`KWARGS_DIGITS` significant
    digits (``{"lr": 0.00371111, "betas": [0.9, 0.99], "weight_decay": 0.00655131}``)."""

    def short(value: Any) -> Any:
        if isinstance(value, float) and math.isfinite(value):
            return float(f"{value:.{KWARGS_DIGITS}g}")
        if isinstance(value, list | tuple):
            return [short(v) for v in value]
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        return value

    return json.dumps(short(kwargs))


def arms_text(arms: dict[str, Any]) -> list[str]:
    """Lines on Lion against the AdamW baseline arm (none for a sweep without one)."""
    if not arms.get("baseline"):
        return []
    verdict, ci = arms.get("verdict"), arms.get("difference_ci")
    if verdict in ("lion_better", "adamw_better") and ci:
        adv = sorted(abs(v) for v in ci)
        who = "Lion" if verdict == "lion_better" else "AdamW"
        head = f"{who} better by {fmt(abs(arms['difference']))} [{interval_text(adv)}]"
    elif verdict == "tied" and ci:
        head = f"tied: Lion − AdamW {fmt(arms['difference'])} [{interval_text(ci)}]"
    else:
        head = f"not measured: {arms.get('reason')}"
    lines = [f"Lion vs AdamW: {head}"]
    for arm in (arms.get("lion"), arms.get("adamw")):
        best = (arm or {}).get("best")
        if best:
            ci_text = f" [{interval_text(best['ci'])}]" if best.get("ci") else ""
            name = "Lion" if arm["optimizer"] == "lion" else "AdamW"
            lines.append(
                f"  {name:<5} {fmt(best['mean'])}{ci_text}, {best['n_seeds']} seeds "
                f"(trial {best['trial_number']})"
            )
    for label, key in (("lr", "lr_ratio"), ("wd", "weight_decay_ratio")):
        r = arms.get(key)
        if r:
            ci_text = f" [{interval_text(r['ci'])}]" if r.get("ci") else " (best configs)"
            lo, hi = r["expected"]
            lines.append(
                f"  {label} AdamW/Lion {fmt(r['value'])}×{ci_text}, paper "
                f"{lo:.2g}–{hi:.2g}×: {r['agreement']}"
            )
    if verdict != "not_measured" and arms.get("selection_note"):
        lines.append(f"  {arms['selection_note']}")
    return lines


def sweeps_list(page: dict[str, Any]) -> Table:
    """The table of ``lionsweep status``: one row per sweep, fitting 80 columns with nothing
    cut (ids, counts and the status never wrap; the other cells wrap, and fold a word too
    long)."""
    rows = []
    for sweep in page["items"]:
        c = sweep.get("counts") or {}
        rows.append(
            (
                str(sweep["id"]),
                sweep["name"],
                (sweep.get("task") or {}).get("name", "-"),
                # the task is in its own column: "waiting for a worker with task X" short
                "no worker yet"
                if (sweep.get("activity") or "").startswith("waiting for a worker")
                else sweep["status"],
                f"{sweep.get('finished', 0)}/{sweep['n_trials']}",
                "/".join(str(c.get(k, 0)) for k in ("complete", "pruned", "failed", "running")),
                best_text(sweep, short=True),
            )
        )
    table = new_table(f"Sweeps ({page['total']})")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("name")
    table.add_column("task")
    # as wide as its longest value ("no worker yet"): the others give way
    table.add_column("status", width=max([len("status"), *(len(row[3]) for row in rows)]))
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("c/p/f/r", justify="right", no_wrap=True)
    table.add_column("best (seed mean)", justify="right")
    table.caption = "c/p/f/r: complete/pruned/failed/running"
    table.caption_justify = "left"
    for row in rows:
        table.add_row(*row)
    return table


def sweep_table(sweep: dict[str, Any]) -> Table:
    """The table of ``lionsweep status ID``: where one sweep stands, its best config and its
    re-evaluation."""
    table = new_table(f"Sweep {sweep['id']}: {sweep['name']}")
    table.add_column("field")
    table.add_column("value")
    best = sweep.get("best") or {}
    eta = sweep.get("eta_seconds")
    rows = [
        ("status", sweep.get("activity") or sweep["status"]),
        ("task", (sweep.get("task") or {}).get("name", "-")),
        ("progress", f"{sweep.get('finished', 0)}/{sweep['n_trials']}"),
        *((k, str(v)) for k, v in (sweep.get("counts") or {}).items()),
        ("best config (seed mean)", best_text(sweep)),
        ("best trial", fmt(best.get("trial_number"))),
        (
            "best single run",
            "-"
            if best.get("best_single_value") is None
            else f"{fmt(best['best_single_value'])} (trial {best.get('best_single_trial_number')}"
            "; one seed, not the config's value)",
        ),
        ("re-evaluation", reevaluation_text(sweep.get("reevaluation"))),
        ("eta", "-" if eta is None else f"{eta:.0f} s"),
        ("created", str(sweep.get("created_at", "-"))),
    ]
    for field, value in rows:
        table.add_row(field, value)
    return table


def reevaluation_text(re: dict[str, Any] | None) -> str:
    """One line on where the re-evaluation of the leading configs stands."""
    if not re:
        return "-"
    status = re.get("status", "-")
    if status in ("queued", "done"):
        return f"{status}: top {re.get('top_k')} × {re.get('seeds')} seeds, " + (
            f"{re.get('finished')}/{re.get('trials')} runs done"
        )
    if status == "pending":
        return f"pending: top {re.get('top_k')} × {re.get('seeds')} seeds when the trials are done"
    return f"{status}" + (f" ({re['reason']})" if re.get("reason") else "")


def rule_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table of a rule's numbers."""
    table = new_table(title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, fmt(value))
    return table


def print_sweep_rule(fit: dict[str, Any], sweep_id: int) -> None:
    """Print a sweep's fitted lr × weight-decay answer: verdict, intervals, transfer."""
    verdict = fit["verdict"]
    colour = {"valley": "green", "per_axis": "green", "lr_only": "cyan", "wd_only": "cyan"}.get(
        verdict, "yellow" if verdict == "boundary" else "red"
    )
    console.print(f"sweep {sweep_id}: verdict [bold {colour}]{verdict}[/]", highlight=False)
    console.print(escape(fit["reason"]), highlight=False)
    rows: dict[str, Any] = {}
    if fit.get("slope") is not None:
        rows["slope d ln λ / d ln η"] = (
            f"{fmt(fit['slope'])} (90% CI {interval_text(fit['slope_ci'])})"
        )
    if fit.get("product") is not None:
        rows["η·λ at the optimum"] = f"{fmt(fit['product'])} ({interval_text(fit['product_ci'])})"
        rows["α0 = √(2ηλ)"] = f"{fmt(fit['alpha0'])} ({interval_text(fit['alpha0_ci'])})"
    opt = fit.get("optimum")
    if opt:  # only what the verdict shows: an axis or a value it rules out is null
        if opt.get("lr") is not None:
            rows["optimum lr"] = f"{fmt(opt['lr'])} ({interval_text(opt['lr_ci'])})"
        if opt.get("weight_decay") is not None:
            rows["optimum weight decay"] = (
                f"{fmt(opt['weight_decay'])} ({interval_text(opt['weight_decay_ci'])})"
            )
        if opt.get("value") is not None:
            rows["predicted objective"] = f"{fmt(opt['value'])} ({interval_text(opt['value_ci'])})"
    stab = fit.get("stability")
    if stab and stab.get("lr_diverged_min") is not None:
        rows["training diverges"] = (
            f"from lr {fmt(stab['lr_diverged_min'])} ({stab['n_diverged']} diverged; highest "
            f"lr that trained below it {fmt(stab.get('lr_stable_max'))})"
        )
    nd = fit.get("no_decay")
    if nd:
        rows["no decay (λ = 0) − optimum"] = (
            f"{fmt(nd['difference'])} ({interval_text(nd['difference_ci'])})"
        )
    if fit.get("design") == "one_at_a_time":
        rows["design"] = "one at a time (per-axis optimum; slope not identifiable)"
    if fit.get("on_boundary"):
        rows["at the trials' edge"] = ", ".join(fit.get("boundary_edges") or [])
    best = fit.get("best")
    if best:
        rows["best config"] = (
            f"trial {best['trial_number']}: lr {fmt(best['lr'])}, weight decay "
            f"{fmt(best['weight_decay'])}, {fmt(best['value'])}"
        )
    rows["noise sd (seeds)"] = fmt(fit.get("noise_sd"))
    on_log = fit.get("value_scale") == "log"
    rows["residual sd (fit, ln scale)" if on_log else "residual sd (fit)"] = fmt(
        fit.get("residual_sd")
    )
    if fit.get("n_imputed"):
        rows["pruned trials imputed"] = str(fit["n_imputed"])
    left = fit.get("left_out") or {}
    rows["trials fitted"] = (
        f"{fit['n']} (left out: " + ", ".join(f"{v} {k}" for k, v in left.items() if v) + ")"
        if any(left.values())
        else str(fit["n"])
    )
    if fit.get("width") is not None:
        rows["sweep width"] = f"{fmt(fit['width'])} ({fit.get('width_param')})"
    table = new_table("Fitted lr × weight-decay surface")
    table.add_column("quantity")
    table.add_column("estimate (90% CI)")
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    for note in fit.get("notes") or []:
        console.print(escape(note), highlight=False, style="dim")
    t = fit.get("transfer")
    if t:
        moved = " and ".join(t["moved"])
        console.print(
            f"to width {fmt(t['to_width'])} ({t['width_rule']} rule, {moved} moved): "
            f"lr {fmt(t['lr'])}, weight decay {fmt(t['weight_decay'])}",
            highlight=False,
        )
        console.print(escape(t["note"]), highlight=False, style="dim")
    if verdict != "valley":
        console.print(
            "no lr–weight-decay trade-off is drawn or moved: the verdict is not 'valley'",
            highlight=False,
        )


#: Colours of a ladder rule's verdicts (any other is red).
LADDER_VERDICT_COLOURS = {
    "rule_identified": "green",
    "indistinguishable": "cyan",
    "insufficient": "yellow",
}
#: Colours of a confirmation's verdicts (any other is yellow).
CONFIRM_VERDICT_COLOURS = {
    "transfer_better": "green",
    "no_difference": "cyan",
    "untransferred_better": "red",
}


def width_text(ladder: dict[str, Any], width: float) -> str:
    """``param=width`` of a ladder's width param."""
    return f"{ladder['param']}={fmt(width)}"


def ladder_sweeps(ladder: dict[str, Any]) -> list[dict[str, Any]]:
    """A ladder's rungs, then its confirmations."""
    return [*ladder.get("rungs", []), *ladder.get("confirmations", [])]


def sweeps_table(ladder: dict[str, Any]) -> Table:
    """A table of a ladder's rungs and confirmations and where each stands."""
    table = new_table("Rungs and confirmations")
    table.add_column(ladder["param"], justify="right")
    table.add_column("sweep", justify="right")
    table.add_column("role")
    table.add_column("status")
    table.add_column("finished", justify="right")
    table.add_column("progress", justify="right")
    for sweep in ladder_sweeps(ladder):
        table.add_row(
            fmt(sweep["width"]),
            str(sweep["sweep_id"]),
            sweep["role"],
            sweep["status"],
            f"{sweep['finished']}/{sweep['n_trials']}",
            f"{sweep['progress']:.0%}",
        )
    return table


def status_counts(ladder: dict[str, Any]) -> str:
    """``2 cancelled, 1 complete``: how many of a ladder's sweeps are in each status."""
    counts: dict[str, int] = {}
    for sweep in ladder_sweeps(ladder):
        counts[sweep["status"]] = counts.get(sweep["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def ladders_list(page: dict[str, Any]) -> Table:
    """The table of ``lionsweep ladder status``: one row per ladder."""
    table = new_table(f"Ladders ({page['total']})")
    table.add_column("id", justify="right")
    table.add_column("name", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("widths")
    table.add_column("status")
    table.add_column("finished", justify="right")
    table.add_column("confirms", justify="right")
    for lad in page["items"]:
        rungs = lad["rungs"]
        table.add_row(
            str(lad["id"]),
            escape(lad["name"]),
            escape(lad["task"]["name"]),
            ", ".join(fmt(w) for w in lad["widths"]),
            lad["status"],
            f"{sum(r['finished'] for r in rungs)}/{sum(r['n_trials'] for r in rungs)}",
            str(len(lad["confirmations"])),
        )
    return table


def print_ladder(ladder: dict[str, Any]) -> None:
    """Print one ladder: its status and task, then its rungs and confirmations."""
    params = ", ".join(f"{k}={v}" for k, v in (ladder["task"].get("params") or {}).items())
    console.print(
        f"ladder [bold]{ladder['id']}[/] ({escape(ladder['name'])}): [bold]{ladder['status']}[/], "
        f"{ladder['progress']:.0%} of the rungs' trials finished",
        highlight=False,
    )
    console.print(
        escape(
            f"task {ladder['task']['name']}" + (f" ({params})" if params else "") + f"; width "
            f"param {ladder['param']!r}; box {ladder['scale_box']}"
        ),
        highlight=False,
    )
    console.print(sweeps_table(ladder))


def print_ladder_rule(fit: dict[str, Any], width: float | None = None) -> None:
    """Print a ladder's width rule: verdict, the rungs' optima, the exponents, the candidate
    rules, the prediction at ``width`` and the confirmations."""
    lad = {"param": fit["param"]}
    verdict = fit["verdict"]
    colour = LADDER_VERDICT_COLOURS.get(verdict, "red")
    console.print(
        f"ladder {fit['ladder_id']}: verdict [bold {colour}]{verdict}[/]", highlight=False
    )
    console.print(escape(fit["reason"]), highlight=False)
    if not fit["complete"]:
        warn("not every rung is complete: the answer may change")

    table = new_table("Rungs' optima (90% CI)")
    table.add_column(fit["param"], justify="right")
    table.add_column("verdict")
    table.add_column("lr", justify="right")
    table.add_column("weight decay", justify="right")
    table.add_column("fit uses")
    for rung in fit["rungs"]:
        state = rung["verdict"] or "-"
        if rung["status"] != "complete":
            state += f" ({rung['status']})"
        uses = ", ".join("wd" if u == "weight_decay" else u for u in rung["used"])
        table.add_row(
            fmt(rung["width"]),
            state,
            estimate_text(rung.get("lr"), rung.get("lr_ci"), stacked=True),
            estimate_text(rung.get("weight_decay"), rung.get("weight_decay_ci"), stacked=True),
            uses or "nothing",
        )
    console.print(table)
    for rung in fit["rungs"]:
        if rung["verdict"] not in ("valley", "lr_only") or "weight_decay" not in rung["used"]:
            console.print(
                escape(f"{width_text(lad, rung['width'])}: {rung['reason']}"),
                style="dim",
                highlight=False,
            )

    exponents = {
        "lr": ("lr_exponent", "lr_exponent_ci"),
        "weight decay": ("wd_exponent", "wd_exponent_ci"),
        "product η·λ": ("product_exponent", "product_exponent_ci"),
    }
    if any(fit.get(key) is not None for key, _ in exponents.values()):
        table = new_table("Width exponents")
        table.add_column("quantity")
        table.add_column("exponent", justify="right")
        table.add_column("90% CI", justify="right")
        for name, (key, ci) in exponents.items():
            table.add_row(name, fmt(fit.get(key)), interval_text(fit.get(ci)))
        console.print(table)
        at_ref = f"lr {fmt(fit.get('lr_at_reference'))}"
        if fit.get("wd_at_reference") is not None:
            at_ref += f", weight decay {fmt(fit['wd_at_reference'])}"
        console.print(
            escape(
                f"fitted at {width_text(lad, fit['reference_width'])} (the rungs' geometric "
                f"mean): {at_ref}"
            ),
            highlight=False,
        )

    if fit["rules"]:
        table = new_table("Candidate rules")
        for column in ("rule", "lr exp", "wd exp", "χ²", "dof", "p", "rel. lik.", "fits"):
            table.add_column(column, justify="left" if column in ("rule", "fits") else "right")
        for score in fit["rules"]:
            name = score["name"] + (" *" if score["name"] == fit.get("best_rule") else "")
            table.add_row(
                name,
                fmt(score["lr_exponent"]),
                fmt(score["wd_exponent"]),
                fmt(score["chi2"]),
                fmt(score["dof"]),
                fmt(score["p_value"]),
                fmt(score["relative_likelihood"]),
                "yes" if score["consistent"] else "no",
            )
        console.print(table)
        console.print(
            "* best rule; fits: p ≥ 0.05; rel. lik.: exp(-(χ² - min χ²)/2)",
            style="dim",
            highlight=False,
        )

    pred = fit.get("prediction")
    if pred:
        moved = pred["weight_decay_moved"]
        rows = {
            "lr": estimate_text(pred["lr"], pred["lr_ci"]),
            "weight decay": estimate_text(pred["weight_decay"], pred["weight_decay_ci"]),
            "weight decay moved": "yes" if moved else "no: the widest rung's best, unmoved",
            "objective": estimate_text(pred.get("value"), pred.get("value_ci")),
        }
        table = new_table(f"Prediction at {width_text(lad, pred['width'])}")
        table.add_column("quantity")
        table.add_column("estimate (90% CI)", justify="right")
        for key, value in rows.items():
            table.add_row(key, value)
        console.print(table)
        console.print(escape(pred["note"]), style="dim", highlight=False)
    elif width is not None:
        console.print(
            escape(
                f"no prediction at {width_text(lad, width)}: the rungs give no lr exponent "
                f"(verdict {verdict})"
            ),
            highlight=False,
        )

    for conf in fit["confirmations"]:
        print_confirmation(conf, lad)


def print_confirmation(conf: dict[str, Any], lad: dict[str, Any]) -> None:
    """Print one confirmation: predicted against achieved objective per arm, the difference
    of the transferred and untransferred configs, the verdict and its note."""
    table = new_table(f"Confirmation at {width_text(lad, conf['width'])}")
    table.add_column("arm")
    table.add_column("lr", justify="right")
    table.add_column("weight decay", justify="right")
    table.add_column("seeds", justify="right")
    table.add_column("objective (90% CI)", justify="right")
    pred = conf.get("predicted")
    if pred:
        table.add_row(
            "predicted",
            fmt(pred["lr"]),
            fmt(pred["weight_decay"]),
            "",
            estimate_text(pred.get("value"), pred.get("value_ci"), stacked=True),
        )
    for name in ("transferred", "untransferred"):
        arm = conf[name]
        table.add_row(
            name,
            fmt(arm["lr"]),
            fmt(arm["weight_decay"]),
            str(arm["n"]),
            estimate_text(arm.get("mean"), arm.get("ci"), stacked=True),
        )
    if conf.get("difference") is not None:
        table.add_row(
            "difference",
            "",
            "",
            "",
            estimate_text(conf["difference"], conf.get("difference_ci"), stacked=True),
        )
    console.print(table)
    if conf["untransferred"].get("source"):
        console.print(
            escape(f"untransferred: {conf['untransferred']['source']}, unmoved"),
            style="dim",
            highlight=False,
        )
    verdict = conf["verdict"]
    colour = CONFIRM_VERDICT_COLOURS.get(verdict, "yellow")
    console.print(
        f"sweep {conf['sweep_id']} {conf['status']}: verdict [bold {colour}]{verdict}[/]",
        highlight=False,
    )
    if verdict != "pending":
        console.print(escape(conf["note"]), style="dim", highlight=False)
