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
    table = new_table("Best configs (ranked on some runs; mean of the held-out others)")
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
#: Colours of the verdicts against a confirmation's own sweep (any other is yellow).
TARGET_VERDICT_COLOURS = {"confirmed": "green", "target_better": "red"}


def width_text(ladder: dict[str, Any], width: float) -> str:
    """``param=width`` of a ladder's width param."""
    return f"{ladder['param']}={fmt(width)}"


def point_text(point: dict[str, Any]) -> str:
    """``width=512, train_steps=800``: a point of a ladder, a value per axis."""
    return ", ".join(f"{axis}={fmt(value)}" for axis, value in point.items())


def is_joint(answer: dict[str, Any]) -> bool:
    """Whether a ladder (or its rule answer) is over several axes, or one that is not the
    width: then its answer is the joint fit's, per axis, and its sweeps are named by points."""
    rungs = answer.get("rungs") or []
    return bool(rungs) and (len(rungs[0]["point"]) > 1 or rungs[0]["width"] is None)


def ladder_axes(answer: dict[str, Any]) -> list[str]:
    """The axes a ladder's rungs vary, in their order."""
    rungs = answer.get("rungs") or []
    return list(rungs[0]["point"]) if rungs else [answer["param"]]


def sweep_text(ladder: dict[str, Any], sweep: dict[str, Any]) -> str:
    """Where a rung or confirmation sits: ``width=64`` on a one-axis width ladder, else its
    point."""
    return point_text(sweep["point"]) if is_joint(ladder) else width_text(ladder, sweep["width"])


def ladder_sweeps(ladder: dict[str, Any]) -> list[dict[str, Any]]:
    """A ladder's rungs, then its confirmations."""
    return [*ladder.get("rungs", []), *ladder.get("confirmations", [])]


def sweeps_table(ladder: dict[str, Any]) -> Table:
    """A table of a ladder's rungs and confirmations and where each stands: a column per axis
    (a ladder over several axes leaves out the progress, which ``finished`` says)."""
    table = new_table("Rungs and confirmations")
    joint = is_joint(ladder)
    axes = ladder_axes(ladder) if joint else [ladder["param"]]
    for axis in axes:
        table.add_column(axis, justify="right")
    table.add_column("sweep", justify="right")
    table.add_column("role")
    table.add_column("status")
    table.add_column("finished", justify="right")
    if not joint:
        table.add_column("progress", justify="right")
    for sweep in ladder_sweeps(ladder):
        values = [fmt(sweep["point"].get(a)) for a in axes] if joint else [fmt(sweep["width"])]
        cells = [
            *values,
            str(sweep["sweep_id"]),
            sweep["role"],
            sweep["status"],
            f"{sweep['finished']}/{sweep['n_trials']}",
        ]
        if not joint:
            cells.append(f"{sweep['progress']:.0%}")
        table.add_row(*cells)
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
    table.add_column("widths (axes)")
    table.add_column("status")
    table.add_column("finished", justify="right")
    table.add_column("confirms", justify="right")
    for lad in page["items"]:
        rungs = lad["rungs"]
        table.add_row(
            str(lad["id"]),
            escape(lad["name"]),
            escape(lad["task"]["name"]),
            f"{len(rungs)} rungs over " + ", ".join(ladder_axes(lad))
            if is_joint(lad)
            else ", ".join(fmt(w) for w in lad["widths"]),
            lad["status"],
            f"{sum(r['finished'] for r in rungs)}/{sum(r['n_trials'] for r in rungs)}",
            str(len(lad["confirmations"])),
        )
    return table


def axes_text(ladder: dict[str, Any]) -> str:
    """``width param 'width'``, or ``axes width (width), train_steps (steps)``."""
    if not is_joint(ladder):
        return f"width param {ladder['param']!r}"
    return "axes " + ", ".join(f"{a['param']} ({a['role']})" for a in ladder.get("axes") or [])


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
            f"task {ladder['task']['name']}"
            + (f" ({params})" if params else "")
            + "; "
            + axes_text(ladder)
            + f"; box {ladder['scale_box']}"
        ),
        highlight=False,
    )
    console.print(sweeps_table(ladder))
    if ladder.get("pending"):
        points = "; ".join(", ".join(f"{k}={v:g}" for k, v in p.items()) for p in ladder["pending"])
        console.print(escape(f"{ladder['pending_note']} ({points})"), highlight=False)
    for rung in ladder.get("followed") or []:
        where = ", ".join(f"{k}={v:g}" for k, v in rung["point"].items())
        console.print(escape(f"followed {where}: {rung['note']}"), highlight=False)


def print_ladder_verdict(fit: dict[str, Any]) -> None:
    """Print a ladder rule's verdict, its reason, and a warning while rungs run."""
    verdict = fit["verdict"]
    colour = LADDER_VERDICT_COLOURS.get(verdict, "red")
    console.print(
        f"ladder {fit['ladder_id']}: verdict [bold {colour}]{verdict}[/]", highlight=False
    )
    console.print(escape(fit["reason"]), highlight=False)
    if not fit["complete"]:
        warn("not every rung is complete: the answer may change")


def print_ladder_rule(
    fit: dict[str, Any], width: float | None = None, asked: dict[str, float] | None = None
) -> None:
    """Print a ladder's rule: for a one-axis width ladder its verdict, the rungs' optima, the
    exponents, the candidate rules, the prediction at ``width`` and the confirmations; for a
    ladder over several axes (or one that is not the width) the joint fit's, axis by axis
    (see :func:`print_joint_rule`). ``asked``: the point asked for, by query field."""
    if is_joint(fit):
        print_joint_rule(fit, asked)
        return
    lad = {"param": fit["param"]}
    verdict = fit["verdict"]
    print_ladder_verdict(fit)

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


#: How the CLI writes each exponent a named rule may fix.
RULE_EXPONENTS = {"lr_exponent": "lr", "wd_exponent": "wd", "product_exponent": "lr·wd"}


def fixes_text(rule: dict[str, Any]) -> str:
    """``lr -0.5, wd 0.5``: the exponents a named rule fixes (an untested one marked)."""
    tested = {"lr": "lr_exponent", "weight_decay": "wd_exponent", "product": "product_exponent"}
    tested_keys = {tested.get(t, t) for t in rule.get("tested") or []}
    parts = []
    for key, name in RULE_EXPONENTS.items():
        if rule.get(key) is None:
            continue
        mark = "" if key in tested_keys else " (untested)"
        parts.append(f"{name} {fmt(float(rule[key]))}{mark}")
    return ", ".join(parts) or "-"


def reach_text(reach: dict[str, Any]) -> str:
    """Where a prediction's point lies on one axis against the rungs."""
    span = f"{fmt(reach['low'])}–{fmt(reach['high'])}"
    if reach["extrapolated"]:
        return f"extrapolated ×{fmt(float(reach['factor']))} beyond the rungs' {span}"
    return f"inside the rungs' {span}"


def note_beyond_reach(note: str) -> str:
    """A joint prediction's note less what its reach says (extrapolated or interpolated)."""
    parts = [
        p
        for p in note.split("; ")
        if not p.startswith("extrapolated along") and p != "interpolated between the rungs"
    ]
    return "; ".join(parts)


def print_joint_rule(fit: dict[str, Any], asked: dict[str, float] | None = None) -> None:
    """Print a joint (several-axis) ladder rule: the verdict, the design with each rung's own
    optimum, per axis its exponents with 90% intervals, its named rules tested (the best
    marked) and the note, the prediction at the point asked for with each axis's reach, and
    the confirmations."""
    print_ladder_verdict(fit)
    axes = ladder_axes(fit)
    design = new_table("Design: the rungs")
    for axis in axes:
        design.add_column(axis, justify="right")
    design.add_column("sweep", justify="right")
    design.add_column("status")
    design.add_column("fitted", justify="right")
    design.add_column("surface")
    optima = new_table("Rungs' own optima (90% CI)")
    optima.add_column("sweep", justify="right")
    optima.add_column("lr", justify="right")
    optima.add_column("lr 90% CI", justify="right")
    optima.add_column("weight decay", justify="right")
    optima.add_column("wd 90% CI", justify="right")
    for rung in fit["rungs"]:
        design.add_row(
            *(fmt(rung["point"].get(a)) for a in axes),
            str(rung["sweep_id"]),
            rung["status"],
            str(rung["n"]),
            rung["verdict"] or "-",
        )
        optima.add_row(
            str(rung["sweep_id"]),
            fmt(rung.get("lr")),
            interval_text(rung.get("lr_ci")),
            fmt(rung.get("weight_decay")),
            interval_text(rung.get("weight_decay_ci")),
        )
    console.print(design)
    if any(rung.get("lr") is not None for rung in fit["rungs"]):
        console.print(optima)
    for rung in fit["rungs"]:
        if rung["verdict"] is None:
            console.print(
                escape(f"{point_text(rung['point'])}: {rung['reason']}"),
                style="dim",
                highlight=False,
            )

    exponents = {
        "lr": "lr_exponent",
        "weight decay": "wd_exponent",
        "product lr·wd": "product_exponent",
        "timescale 1/(lr·wd)": "timescale_exponent",
    }
    for axis in fit.get("axes") or []:
        table = new_table(f"Axis {axis['param']} ({axis['role']}): exponents")
        table.add_column("quantity")
        table.add_column("exponent", justify="right")
        table.add_column("90% CI", justify="right")
        for name, key in exponents.items():
            table.add_row(name, fmt(axis.get(key)), interval_text(axis.get(key + "_ci")))
        console.print(table)
        values = ", ".join(fmt(v) for v in axis.get("values") or [])
        console.print(f"the rungs' {escape(axis['param'])}: {values}", highlight=False)
        if axis.get("rules"):
            rules = new_table(f"Axis {axis['param']}: named rules")
            for column in ("rule", "fixes", "χ²", "dof", "p", "rel. lik.", "fits"):
                rules.add_column(
                    column, justify="left" if column in ("rule", "fixes", "fits") else "right"
                )
            for rule in axis["rules"]:
                best = " *" if rule["name"] == axis.get("best_rule") else ""
                rules.add_row(
                    rule["name"] + best,
                    fixes_text(rule),
                    fmt(rule["chi2"]),
                    fmt(rule["dof"]),
                    fmt(rule["p_value"]),
                    fmt(rule["relative_likelihood"]),
                    "yes" if rule["consistent"] else "no",
                )
            console.print(rules)
        best = axis.get("best_rule")
        console.print(
            escape(f"best rule: {best}" if best else "best rule: none"),
            highlight=False,
        )
        if axis.get("rule_note"):
            console.print(escape(axis["rule_note"]), style="dim", highlight=False)
    if fit.get("axes"):
        console.print(
            "* best rule; fits: p ≥ 0.05 (Wald test); rel. lik.: exp(-(χ² - min χ²)/2)",
            style="dim",
            highlight=False,
        )
    if fit.get("axes_note"):
        console.print(escape(fit["axes_note"]), style="dim", highlight=False)

    pred = fit.get("prediction")
    if pred:
        table = new_table(f"Prediction at {point_text(pred['point'])}")
        table.add_column("quantity")
        table.add_column("estimate (90% CI)", justify="right")
        table.add_row("lr", estimate_text(pred["lr"], pred["lr_ci"]))
        table.add_row("weight decay", estimate_text(pred["weight_decay"], pred["weight_decay_ci"]))
        if not pred["weight_decay_moved"]:
            table.add_row("weight decay moved", "no: the nearest rung's, unmoved")
        if pred.get("value") is not None:
            table.add_row("objective", estimate_text(pred["value"], pred.get("value_ci")))
        for reach in pred.get("reach") or []:
            table.add_row(f"{reach['param']} {fmt(reach['value'])}", reach_text(reach))
        console.print(table)
        rest = note_beyond_reach(pred.get("note") or "")
        if rest:
            console.print(escape(rest), style="dim", highlight=False)
    elif asked:
        where = ", ".join(f"{k}={fmt(v)}" for k, v in asked.items())
        console.print(
            escape(f"no prediction at {where}: the joint fit gives no lr there ({fit['reason']})"),
            highlight=False,
        )

    for conf in fit["confirmations"]:
        print_confirmation(conf, fit)


def arm_label(arm: dict[str, Any], i: int) -> str:
    """An extra arm's name in a confirmation table: its source, else ``arm N``."""
    return arm.get("name") or f"arm {i}"


def print_confirmation(conf: dict[str, Any], lad: dict[str, Any]) -> None:
    """Print one confirmation: predicted against achieved objective per arm (the transferred
    and untransferred configs, and any further arms), their difference, the verdict and its
    note. ``lad``: the ladder (or its rule answer)."""
    where = point_text(conf["point"]) if is_joint(lad) else width_text(lad, conf["width"])
    table = new_table(f"Confirmation at {where}")
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
    extra = [(arm_label(arm, i), arm) for i, arm in enumerate(conf.get("arms") or [], start=1)]
    for name, arm in [
        ("transferred", conf["transferred"]),
        ("untransferred", conf["untransferred"]),
    ]:
        table.add_row(
            name,
            fmt(arm["lr"]),
            fmt(arm["weight_decay"]),
            str(arm["n"]),
            estimate_text(arm.get("mean"), arm.get("ci"), stacked=True),
        )
    for name, arm in extra:
        table.add_row(
            name,
            fmt(arm.get("lr")),
            fmt(arm.get("weight_decay")),
            str(arm.get("n", 0)),
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
    for name, arm in extra:
        if arm.get("source"):
            console.print(escape(f"{name}: {arm['source']}"), style="dim", highlight=False)
    verdict = conf["verdict"]
    colour = CONFIRM_VERDICT_COLOURS.get(verdict, "yellow")
    console.print(
        f"sweep {conf['sweep_id']} {conf['status']}: verdict [bold {colour}]{verdict}[/]",
        highlight=False,
    )
    if verdict != "pending":
        console.print(escape(conf["note"]), style="dim", highlight=False)
    if conf.get("target"):
        print_target(conf["target"])


def print_target(target: dict[str, Any]) -> None:
    """Print a confirmation's own sweep at its point: its best config against the
    prediction's arm, its own fitted optimum, the verdict and its note."""
    best = target.get("best")
    line = f"the point's own sweep {target['sweep_id']} ({target['finished']} runs finished"
    line += f", {target['status']})"
    if best:
        line += (
            f": best lr {fmt(best['lr'])}, weight decay {fmt(best['weight_decay'])}, "
            f"{estimate_text(best.get('mean'), best.get('ci'))} over {best['n']} seeds"
        )
    if target.get("lr") is not None:
        line += f"; its optimum lr {estimate_text(target['lr'], target.get('lr_ci'))}"
    if target.get("weight_decay") is not None:
        line += (
            f", weight decay {estimate_text(target['weight_decay'], target.get('weight_decay_ci'))}"
        )
    console.print(escape(line), highlight=False)
    verdict = target["verdict"]
    colour = TARGET_VERDICT_COLOURS.get(verdict, "yellow")
    console.print(f"against it: verdict [bold {colour}]{verdict}[/]", highlight=False)
    if verdict != "pending":
        console.print(escape(target["note"]), style="dim", highlight=False)
