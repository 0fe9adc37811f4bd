"""Importing runs made elsewhere into a sweep: the request (rows, or a CSV, JSON-lines or W&B
export with column and state mappings), its limits, and what an import added."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from service.schemas.common import Strict, Text

IMPORT_COLUMNS = (
    "lr",
    "weight_decay",
    "beta1",
    "beta2",
    "betas",
    "warmup_steps",
    "batch_size",
    "seed",
    "optimizer",
    "value",
    "state",
    "name",
)
"""The columns an imported row may have (after ``mapping``)."""
IMPORT_STATES = ("complete", "diverged", "failed")
IMPORT_MAX_ROWS = 1000
"""The most rows one import may bring in: it is one transaction, and Optuna writes a trial in
about 25 ms on SQLite, where the transaction holds the write lock that workers wait on."""


class TrialImport(Strict):
    """Finished runs made elsewhere, to add to a sweep as trials (all or nothing).

    Either ``rows`` (JSON objects, ``format: rows``) or ``text``: the content of a CSV file
    (``csv``), of a JSON-lines file (``jsonl``) or of a W&B runs-table CSV export (``wandb``).
    """

    format: Literal["rows", "csv", "jsonl", "wandb"] = "rows"
    rows: list[dict[str, Any]] | None = Field(default=None, max_length=IMPORT_MAX_ROWS)
    text: Text | None = None
    mapping: dict[str, Literal[IMPORT_COLUMNS]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        max_length=100,
        description='Source column → import column, e.g. ``{"summary.val_loss": "value"}`` '
        "(nested JSON objects are flattened to ``a.b`` names first).",
    )
    ignore: list[Text] = Field(
        default_factory=list,
        max_length=1000,
        description="Source columns to leave out (a W&B export leaves out unknown ones anyway).",
    )
    states: dict[str, Literal["complete", "diverged", "failed", "skip"]] = Field(
        default_factory=dict,
        max_length=100,
        description="Source state → import state (``skip``: leave such rows out). A W&B "
        "export's states default to finished → complete; crashed, failed, killed → failed.",
    )
    source: Text | None = Field(
        default=None, max_length=200, description="A name for where the runs come from."
    )

    @model_validator(mode="after")
    def _rows_or_text(self) -> TrialImport:
        """``rows`` with format ``rows``; ``text`` with the file formats."""
        if self.format == "rows" and (self.rows is None or self.text is not None):
            raise ValueError("format 'rows' needs rows (a list of objects) and no text")
        if self.format != "rows" and (self.text is None or self.rows is not None):
            raise ValueError(f"format {self.format!r} needs text (the file's content) and no rows")
        return self


class ImportOut(BaseModel):
    """What an import added to a sweep."""

    sweep_id: int
    imported: int = Field(description="Trials added (complete + diverged + failed).")
    complete: int
    diverged: int
    failed: int
    skipped: int = Field(description="Rows left out by a ``skip`` state mapping.")
    trial_numbers: list[int]
    ignored_columns: list[str] = Field(
        description="Source columns that were left out (asked for, or unknown in a W&B export)."
    )
