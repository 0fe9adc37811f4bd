"""What the other schema modules share: the vocabularies (parameter names, samplers, pruners,
trial and sweep states), the integer limits of the database and of seeds, and the base of every
request model (``Strict``) with the NUL-free ``Text`` string."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict

PARAMS = ("lr", "weight_decay", "lr_wd_product", "beta1", "beta2", "warmup_steps", "batch_size")
INT_PARAMS = ("warmup_steps", "batch_size")
SamplerName = Literal["tpe", "random", "grid", "qmc", "cmaes", "gp"]
PrunerName = Literal["none", "median", "successive_halving", "hyperband"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
PRUNERS: tuple[str, ...] = get_args(PrunerName)
STATES = ("complete", "pruned", "failed", "running", "waiting")
SWEEP_STATUSES = ("running", "cancelled", "complete")

INT32_MAX = 2**31 - 1
"""The largest SQL INTEGER (trial ids and numbers, Optuna's intermediate-value steps, counts)."""
SEED_LIMIT = 2**32
"""Seeds must be below this: numpy's RandomState, which Optuna's samplers use, takes 0..2**32-1."""
NUL_MSG = "must not contain NUL characters (\\u0000)"
SURROGATE_MSG = (
    "must be valid Unicode: a lone surrogate (\\ud800 to \\udfff, not half of a pair) "
    "cannot be stored"
)


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (JSON can carry one as an escape; UTF-8, and so
    no database or answer, can hold it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Strict(BaseModel):
    """Base for request models: unknown fields, coerced types and non-finite floats are errors.

    Strict: ``true``, ``"5"`` and ``5.0`` are not the integer 5 and ``"3"`` is not a number
    (an integer is still a valid float).
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError(NUL_MSG)
    return text


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string without NUL characters (PostgreSQL cannot store them). Lone surrogates never get
this far: the HTTP gate refuses any body holding one (``json_problem``)."""
