"""Runs made elsewhere brought into a sweep as trials (``POST /api/sweeps/{id}/trials:import``).

Rows come as JSON objects or as the text of a CSV, JSON-lines or W&B runs-table CSV file; each
is checked against the sweep's search space and becomes one Optuna trial made with Optuna's
public ``create_trial`` and added with ``Study.add_trial``, all in one transaction — every row
is checked before anything is written, and a bad row writes nothing.

How a row becomes a trial (the row's ``state``, ``complete`` when absent):

- ``complete``: needs a finite ``value``; a COMPLETE trial with it.
- ``diverged``: a finite ``value`` gives a COMPLETE trial with it; no value, or a non-finite
  one, gives a PRUNED trial without one (what a worker records when it stops a diverging run).
  Either way user attr ``reason`` is ``diverged`` and system attr ``lionsweep:diverged`` is
  true, so an analysis can tell divergence from an ordinary result.
- ``failed``: must have no value; a FAIL trial (reason ``imported: <the source's state>``).

Every imported trial carries system attr ``lionsweep:imported`` = ``{"source", "row", "name"}``;
user attr ``config`` holds what the row says the run used (its params, seed, warmup and batch
size). Params follow the sweep: every swept parameter must be given and lie in its range (or be
one of its choices, or on its step); a fixed one may be left out or must equal the fixed value;
``warmup_steps`` and ``batch_size`` a sweep does not search are kept in ``config`` only. A
sweep that searches ``lr_wd_product`` gets ``lr * weight_decay``. Imported trials do not use up
the sweep's ``n_trials``: it still runs that many trials of its own.

Row numbers are as a person sees the file: a CSV's header is row 1 (its first run row 2, as a
spreadsheet numbers it), a JSON-lines file's row is its line, and ``rows`` count from 1.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import optuna_tables as ot
from service import schemas
from service.catalog import Catalog, SweepInfo
from service.db import Database
from service.errors import Conflict, Invalid, NotFound
from service.models import Sweep

MAX_ERRORS = 50
"""The most row errors one answer lists (the rest are counted)."""
ALIASES = {
    "warmup": "warmup_steps",
    "batch": "batch_size",
    "batchsize": "batch_size",
    "wd": "weight_decay",
    "learning_rate": "lr",
}
"""Other names of import columns (after lower-casing, spaces and hyphens as underscores)."""
WANDB_STATES = {"finished": "complete", "crashed": "failed", "failed": "failed", "killed": "failed"}
"""How a W&B export's run states import unless ``states`` says otherwise."""
NUMBER_COLUMNS = ("lr", "weight_decay", "beta1", "beta2")
INT_COLUMNS = ("warmup_steps", "batch_size", "seed")
NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
NON_FINITE.update({"infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf})


@dataclass
class Row:
    """One row of the input: its number as the user sees it and its cells by source column."""

    number: int
    cells: dict[str, Any]
    text: bool
    """True when the cells are text (CSV), False when they are JSON values."""


@dataclass
class Plan:
    """The checked import: trials to add, or the errors that stop it."""

    trials: list[FrozenTrial] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    skipped: int = 0
    ignored: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    more_errors: int = 0

    def error(self, where: str, row: int | None, column: str | None, msg: str, value: Any) -> None:
        """Note that ``row``'s ``column`` broke rule ``msg`` (FastAPI's 422 item, plus the row
        and column by name)."""
        if len(self.errors) >= MAX_ERRORS:
            self.more_errors += 1
            return
        loc: tuple[Any, ...] = ("body", where)
        if row is not None:
            loc += (row,)
        if column is not None:
            loc += (column,)
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        item = {"type": "value_error", "loc": loc, "msg": msg, "input": value}
        self.errors.append({**item, "row": row, "column": column})

    def detail(self) -> list[dict[str, Any]]:
        """The errors, with a last item counting those left out."""
        out = list(self.errors)
        if self.more_errors:
            out.append(
                {
                    "type": "value_error",
                    "loc": ("body",),
                    "msg": f"… and {self.more_errors} more errors",
                    "input": None,
                    "row": None,
                    "column": None,
                }
            )
        return out


class RowError(Exception):
    """A row (or the file) broke a rule; ``column`` names the column when one is to blame."""

    def __init__(self, row: int | None, column: str | None, msg: str, value: Any = None) -> None:
        super().__init__(msg)
        self.row, self.column, self.msg, self.value = row, column, msg, value


# ---- reading the input -----------------------------------------------------------------------


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A JSON object with nested objects flattened to ``a.b`` keys (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


BOM = "\ufeff"
"""The byte order mark some editors and spreadsheets write at the start of a UTF-8 file."""


def read_csv(text: str) -> tuple[list[str], list[Row]]:
    """A CSV file's header and rows (row N starts on line N; blank lines are skipped; a byte
    order mark before the header, as spreadsheets write, is not part of its first name)."""
    reader = csv.reader(io.StringIO(text.removeprefix(BOM)))
    header: list[str] | None = None
    rows: list[Row] = []
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record or all(not cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                dupes = sorted({c for c in header if header.count(c) > 1})
                if dupes:
                    raise RowError(start, dupes[0], f"the header names column {dupes[0]!r} twice")
                if "" in header:
                    raise RowError(start, None, "the header has a column without a name")
                continue
            if len(record) != len(header):
                raise RowError(
                    start, None, f"has {len(record)} fields; the header has {len(header)}"
                )
            rows.append(Row(start, dict(zip(header, record, strict=True)), text=True))
            if len(rows) > schemas.IMPORT_MAX_ROWS:
                raise RowError(None, None, f"more than {schemas.IMPORT_MAX_ROWS} rows")
    except csv.Error as e:
        raise RowError(line, None, f"not valid CSV: {e}") from None
    if header is None:
        raise RowError(None, None, "the file is empty (no header row)")
    return header, rows


def read_jsonl(text: str) -> list[Row]:
    """A JSON-lines file's rows, nested objects flattened (row N is line N; blank lines skipped).

    ``NaN`` and ``Infinity`` are read as numbers, as Python's ``json`` writes them; a key given
    twice in one object is an error (as in a request body); a byte order mark is skipped.
    """
    rows = []
    for number, line in enumerate(text.removeprefix(BOM).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except ValueError as e:
            raise RowError(number, None, f"not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise RowError(number, None, 'must be a JSON object ({"lr": …, "value": …})')
        rows.append(Row(number, flatten(obj), text=False))
        if len(rows) > schemas.IMPORT_MAX_ROWS:
            raise RowError(None, None, f"more than {schemas.IMPORT_MAX_ROWS} rows")
    return rows


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; ValueError naming a key given twice."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def normal_name(name: str) -> str:
    """A column name as the import compares it: lower case, spaces and hyphens as ``_``."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return ALIASES.get(key, key)


# ---- reading cells ---------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any, text: bool, finite: bool = True) -> float:
    """A cell as a float (text parsed; JSON must be a number, or a non-finite word when
    ``finite`` is False, since strict JSON has no NaN)."""
    if isinstance(value, bool):
        raise ValueError("must be a number (got a boolean)")
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str) and (text or not finite):
        word = value.strip().lower()
        if word in NON_FINITE:
            out = NON_FINITE[word]
        elif not text:
            raise ValueError(f"must be a number (got the text {value!r})")
        else:
            try:
                out = float(word)
            except ValueError:
                raise ValueError(f"must be a number (got {value!r})") from None
    else:
        raise ValueError(f"must be a number (got {type(value).__name__} {value!r})")
    if finite and not math.isfinite(out):
        raise ValueError(f"must be a finite number (got {out})")
    return out


def _integer(value: Any, text: bool) -> int:
    out = _number(value, text)
    if out != int(out):
        raise ValueError(f"must be an integer (got {out:g})")
    return int(out)


def _betas(value: Any, text: bool) -> tuple[float, float]:
    """``[b1, b2]`` as a JSON list, or text like ``0.9,0.99``, ``(0.9, 0.99)``, ``[0.9 0.99]``."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,;]+", value.strip().strip("[]()")) if p]
    elif isinstance(value, list):
        parts = value
    else:
        raise ValueError(f"must be two numbers [beta1, beta2] (got {value!r})")
    if len(parts) != 2:
        raise ValueError(f"must be two numbers [beta1, beta2] (got {value!r})")
    return _number(parts[0], text or isinstance(value, str)), _number(
        parts[1], text or isinstance(value, str)
    )


def _string(value: Any, max_length: int = 200) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"must be text (got {value!r})")
    out = str(value).strip()
    if len(out) > max_length or "\x00" in out:
        raise ValueError(f"must be at most {max_length} characters of text")
    return out


# ---- checking rows against the sweep ---------------------------------------------------------


def _in_distribution(name: str, value: float, dist: BaseDistribution) -> Any:
    """``value`` as the distribution's own value (a choice, an int), or ValueError saying why
    it is not in the sweep's space."""
    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:
            if isinstance(choice, int | float) and math.isclose(value, choice, rel_tol=1e-9):
                return choice
        choices = list(dist.choices)
        raise ValueError(f"{name}={value:g} is not one of this sweep's choices {choices}")
    assert isinstance(dist, FloatDistribution | IntDistribution)
    if isinstance(dist, IntDistribution):
        if value != int(value):
            raise ValueError(f"{name} must be an integer (got {value:g})")
        value = int(value)
    if not dist.low <= value <= dist.high:
        raise ValueError(
            f"{name}={value:g} is outside this sweep's range [{dist.low:g}, {dist.high:g}] "
            "(make a sweep whose space covers it, or leave the row out)"
        )
    if dist.step is not None:
        k = (value - dist.low) / dist.step
        if abs(k - round(k)) > 1e-8:
            raise ValueError(
                f"{name}={value:g} is not on this sweep's grid (from {dist.low:g} in steps of "
                f"{dist.step:g})"
            )
    return value


def _another_import(
    tx: Session, study_id: int, earlier: list[int], n_rows: int, digest: str
) -> bool:
    """Whether the import that added trials ``earlier`` was another request than this one (of
    ``n_rows`` rows and ``digest``): told by its digest, or by its row count where it has none
    (imported before digests were kept)."""
    if not set(earlier) & set(ot.numbers_with_key(tx, study_id, ot.IMPORT_DIGEST)):
        return len(earlier) != n_rows
    same = ot.numbers_with_attr(tx, study_id, ot.IMPORT_DIGEST, digest)
    return not set(earlier) <= set(same) or len(earlier) != n_rows


class Importer:
    """Checks rows against a sweep and adds them as trials (safe to share between threads)."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog

    def run(
        self, sweep_id: int, req: schemas.TrialImport, key: str | None = None
    ) -> schemas.ImportOut:
        """Check every row against the sweep, then add them all as trials in one transaction
        (422 naming each bad row and column, nothing written; 404 for an unknown sweep).

        An import repeated with the same ``key`` (a retry after a lost reply) adds nothing
        and answers with the trials the first one added.
        """
        info = self.catalog.info(sweep_id)
        plan = self.plan(info, req)
        if plan.errors:
            raise Invalid(plan.detail())
        digest = hashlib.sha256(req.model_dump_json().encode()).hexdigest()
        if key is not None:
            for t in plan.trials:
                t.system_attrs = {**t.system_attrs, ot.IMPORT_KEY: key, ot.IMPORT_DIGEST: digest}
        numbers = self.write(info, plan.trials, key, digest)
        self.catalog.changed()
        return schemas.ImportOut(
            sweep_id=sweep_id,
            imported=len(plan.trials),
            complete=plan.kinds.count("complete"),
            diverged=plan.kinds.count("diverged"),
            failed=plan.kinds.count("failed"),
            skipped=plan.skipped,
            trial_numbers=numbers,
            ignored_columns=plan.ignored,
        )

    def write(
        self, info: SweepInfo, trials: list[FrozenTrial], key: str | None, digest: str
    ) -> list[int]:
        """Add ``trials`` to the sweep's study in one transaction; returns their numbers (those
        of the earlier import with the same ``key``, if there is one: nothing is added; 409
        when that import's request, as ``digest`` tells, was another)."""
        with self.db.transaction(info.id) as tx:
            if tx.scalar(select(Sweep.status).where(Sweep.id == info.id)) is None:
                raise NotFound(f"sweep {info.id} not found")
            if key is not None:
                earlier = ot.numbers_with_attr(tx, info.study_id, ot.IMPORT_KEY, key)
                if earlier and _another_import(tx, info.study_id, earlier, len(trials), digest):
                    raise Conflict(
                        f"Idempotency-Key {key!r} was already used for another import (of "
                        f"{len(earlier)} rows, trials {earlier[0]}–{earlier[-1]}); use a new "
                        "key for new rows"
                    )
                if earlier:
                    return earlier
            first = ot.trial_count(tx, info.study_id)
            self.catalog.study(info).add_trials(trials)
        return list(range(first, first + len(trials)))

    def plan(self, info: SweepInfo, req: schemas.TrialImport) -> Plan:
        """Read and check every row; the trials to add, or the errors."""
        plan = Plan()
        where = "rows" if req.format == "rows" else "text"
        try:
            header, rows = self._read(req)
        except RowError as e:
            plan.error(where, e.row, e.column, e.msg, e.value)
            return plan
        columns = self._columns(req, header, rows, plan, where)
        if plan.errors:
            return plan
        states = dict(WANDB_STATES) if req.format == "wandb" else {}
        states.update({k.strip().lower(): v for k, v in req.states.items()})
        for row in rows:
            try:
                built = self._row(info, req, row, columns, states)
            except RowError as e:
                plan.error(where, e.row, e.column, e.msg, e.value)
                continue
            if built is None:
                plan.skipped += 1
                continue
            plan.trials.append(built[0])
            plan.kinds.append(built[1])
        if not plan.errors and not plan.trials:
            plan.error(where, None, None, "no rows to import", None)
        return plan

    @staticmethod
    def _read(req: schemas.TrialImport) -> tuple[list[str] | None, list[Row]]:
        if req.format == "rows":
            rows = []
            for i, obj in enumerate(req.rows or [], 1):
                rows.append(Row(i, flatten(obj), text=False))
            return None, rows
        if req.format == "jsonl":
            return None, read_jsonl(req.text or "")
        return read_csv(req.text or "")

    @staticmethod
    def _columns(
        req: schemas.TrialImport,
        header: list[str] | None,
        rows: list[Row],
        plan: Plan,
        where: str,
    ) -> dict[str, str | None]:
        """Each source column's import column (None: left out); unknown columns are errors
        (named at the header, or at the first row that has them), except in a W&B export."""
        ignore = set(req.ignore)
        first_seen: dict[str, int | None] = {}
        if header is not None:
            first_seen = dict.fromkeys(header, 1)
        else:
            for row in rows:
                for key in row.cells:
                    first_seen.setdefault(key, row.number)
        wandb = req.format == "wandb"
        out: dict[str, str | None] = {}
        for name, row in first_seen.items():
            if name in ignore:
                out[name] = None
            elif name in req.mapping:
                out[name] = req.mapping[name]
            elif (key := normal_name(name)) in schemas.IMPORT_COLUMNS:
                out[name] = key
            elif wandb:
                out[name] = None
            else:
                plan.error(
                    where,
                    row,
                    name,
                    f"unknown column {name!r}: the import reads "
                    f"{', '.join(schemas.IMPORT_COLUMNS)}; map it (--map '{name}=value') or "
                    f"leave it out (--ignore '{name}')",
                    name,
                )
        for src in req.mapping:
            if src not in first_seen:
                plan.error("mapping", None, src, f"the input has no column {src!r}", src)
        targets: dict[str, str] = {}
        for src, dest in out.items():
            if dest is None:
                continue
            if dest in targets:
                plan.error(
                    where,
                    first_seen[src],
                    src,
                    f"columns {targets[dest]!r} and {src!r} both give {dest}",
                    src,
                )
            targets[dest] = src
        if "betas" in targets and ("beta1" in targets or "beta2" in targets):
            plan.error(where, None, targets["betas"], "give betas or beta1/beta2, not both", None)
        if wandb and "value" not in targets:
            plan.error(
                "mapping",
                None,
                None,
                "no column gives the value: map the metric's column to value "
                "(e.g. --map val_loss=value)",
                None,
            )
        plan.ignored = sorted(src for src, dest in out.items() if dest is None)
        return out

    def _row(
        self,
        info: SweepInfo,
        req: schemas.TrialImport,
        row: Row,
        columns: dict[str, str | None],
        states: dict[str, str],
    ) -> tuple[FrozenTrial, str] | None:
        """One row as a trial and its kind (complete, diverged, failed), or None when skipped."""
        n = row.number
        given: dict[str, Any] = {}
        for src, raw in row.cells.items():
            dest = columns.get(src)
            if dest is None or _missing(raw):
                continue
            try:
                given[dest] = self._cell(dest, raw, row.text)
            except ValueError as e:
                raise RowError(n, src, f"{dest} {e}", raw) from None
        col = {dest: src for src, dest in columns.items() if dest is not None}

        raw_state = str(given.get("state", "complete"))
        state = states.get(raw_state.lower(), raw_state.lower())
        if state == "skip":
            return None
        if state not in schemas.IMPORT_STATES:
            known = ", ".join(schemas.IMPORT_STATES)
            raise RowError(
                n,
                col.get("state", "state"),
                f"state {raw_state!r} is not one of {known}: say what it means "
                f"(--state '{raw_state}=failed', or =skip to leave such rows out)",
                raw_state,
            )
        value = given.get("value")
        vcol = col.get("value", "value")
        if state == "complete" and (value is None or not math.isfinite(value)):
            raise RowError(
                n,
                vcol,
                "a complete row needs a finite value"
                + ("" if value is None else f" (got {value}); mark a diverged run diverged"),
                value,
            )
        if state == "failed" and value is not None:
            raise RowError(
                n,
                vcol,
                "a failed row has no value: leave it empty, or mark the run complete or "
                "diverged if its value counts",
                value,
            )
        params, config = self._params(info, row, given, col)
        finite = value is not None and math.isfinite(value)
        if state == "complete" or (state == "diverged" and finite):
            trial_state = TrialState.COMPLETE
        elif state == "diverged":
            trial_state, value = TrialState.PRUNED, None
        else:
            trial_state, value = TrialState.FAIL, None
        user_attrs: dict[str, Any] = {"config": config}
        system_attrs: dict[str, Any] = {
            ot.IMPORTED: {"source": req.source, "row": n, "name": given.get("name")}
        }
        if state == "diverged":
            user_attrs["reason"] = "diverged"
            system_attrs[ot.DIVERGED] = True
        elif state == "failed":
            user_attrs["reason"] = f"imported: {raw_state}"
        try:
            trial = optuna.trial.create_trial(
                state=trial_state,
                value=value,
                params=params,
                distributions={k: info.dists[k] for k in params},
                user_attrs=user_attrs,
                system_attrs=system_attrs,
            )
        except ValueError as e:  # what Optuna itself refuses (checked above; kept as a net)
            raise RowError(n, None, str(e)) from None
        return trial, state

    @staticmethod
    def _cell(dest: str, raw: Any, text: bool) -> Any:
        if dest in NUMBER_COLUMNS:
            return _number(raw, text)
        if dest in INT_COLUMNS:
            return _integer(raw, text)
        if dest == "value":
            return _number(raw, text, finite=False)
        if dest == "betas":
            return _betas(raw, text)
        if dest in ("state", "optimizer"):
            return _string(raw, 50).lower()
        return _string(raw)

    @staticmethod
    def _params(
        info: SweepInfo, row: Row, given: dict[str, Any], col: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The row's Optuna params (the sweep's swept ones) and the config the run used."""
        n = row.number
        values = {k: v for k, v in given.items() if k in schemas.PARAMS or k == "optimizer"}
        if "betas" in given:
            values["beta1"], values["beta2"] = given["betas"]
            col = {**col, "beta1": col["betas"], "beta2": col["betas"]}
        values.setdefault("optimizer", "lion")
        if values["optimizer"] not in ("lion", "adamw"):
            raise RowError(
                n, col.get("optimizer"), "optimizer must be lion or adamw", values["optimizer"]
            )
        rules = {
            "lr": (lambda v: v > 0, "must be > 0"),
            "weight_decay": (lambda v: v >= 0, "must be >= 0"),
            "beta1": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
            "beta2": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
            "warmup_steps": (lambda v: v >= 0, "must be >= 0"),
            "batch_size": (lambda v: v >= 1, "must be >= 1"),
        }
        for name, (ok, rule) in rules.items():
            if name in values and not ok(values[name]):
                raise RowError(n, col.get(name, name), f"{name} {rule}", values[name])
        config = dict(values)
        if "seed" in given:
            if not 0 <= given["seed"] < schemas.SEED_LIMIT:
                raise RowError(n, col["seed"], f"seed must be in [0, {schemas.SEED_LIMIT})")
            config["seed"] = given["seed"]
        product = "lr_wd_product" in info.dists or "lr_wd_product" in info.fixed
        if product and "weight_decay" in values:
            if "lr" not in values:
                raise RowError(n, col.get("lr", "lr"), "lr is needed with weight_decay", None)
            values["lr_wd_product"] = values["lr"] * values.pop("weight_decay")
            col = {**col, "lr_wd_product": col["weight_decay"]}
        params: dict[str, Any] = {}
        for name, dist in info.dists.items():
            source = col.get(name, name)
            if name not in values:
                wanted = "weight_decay" if name == "lr_wd_product" else name
                raise RowError(
                    n,
                    col.get(wanted, wanted),
                    f"{wanted} is searched in this sweep: every row needs it",
                    None,
                )
            v = values[name]
            if name == "optimizer":
                if v not in dist.choices:  # type: ignore[attr-defined]
                    raise RowError(n, source, f"optimizer must be one of {dist.choices}", v)  # type: ignore[attr-defined]
                params[name] = v
                continue
            try:
                params[name] = _in_distribution(name, v, dist)
            except ValueError as e:
                raise RowError(n, source, str(e), v) from None
        for name, fixed in info.fixed.items():
            if name not in values:
                continue
            v = values[name]
            same = v == fixed if isinstance(fixed, str) else math.isclose(v, fixed, rel_tol=1e-9)
            if not same:
                what = "has no AdamW arm" if name == "optimizer" else f"fixes {name} at {fixed:g}"
                shown = v if isinstance(v, str) else f"{v:g}"
                raise RowError(n, col.get(name, name), f"this sweep {what} (got {name}={shown})", v)
        return params, config
