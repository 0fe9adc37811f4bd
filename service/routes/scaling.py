"""The analytic Lion scaling rule (no sweep needed)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from service import schemas
from service.auth import ReadScope

router = APIRouter(prefix="/api", tags=["scaling"])

Positive = Annotated[float | None, Query(gt=0, allow_inf_nan=False)]


def _missing() -> RequestValidationError:
    return _invalid(
        "width",
        "give width or sigma (with alpha0), or adamw_lr and adamw_weight_decay",
        kind="missing",
    )


def _invalid(field: str, msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError(
        [{"type": kind, "loc": ("query", field), "msg": msg, "input": None}]
    )


def _check_finite(lr: float, wd: float, field: str) -> None:
    if not all(math.isfinite(v) for v in (lr, wd, lr * wd)):
        raise _invalid(field, "the inputs give a learning rate or weight decay beyond float range")


@router.get("/scaling-rule", response_model=schemas.AnalyticRuleOut)
def scaling_rule(
    _: ReadScope,
    width: Positive = None,
    sigma: Positive = None,
    alpha0: Positive = None,
    adamw_lr: Positive = None,
    adamw_weight_decay: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    factor: Positive = None,
) -> schemas.AnalyticRuleOut:
    """η = α0·σ, λ = α0/(2σ) from width/sigma, or lr/factor, wd·factor from an AdamW config
    (one or the other: a parameter of the other rule is a 422, not ignored)."""
    from optim import scaling

    if adamw_lr is not None or adamw_weight_decay is not None:
        if adamw_lr is None or adamw_weight_decay is None:
            raise _missing()
        given = {"width": width, "sigma": sigma, "alpha0": alpha0}
        for name in (n for n, v in given.items() if v is not None):
            raise _invalid(
                name,
                f"{name} belongs to the width rule; the AdamW conversion takes adamw_lr, "
                "adamw_weight_decay and factor: give one rule's parameters",
            )
        f = scaling.ADAMW_TO_LION_FACTOR if factor is None else factor
        try:
            lr, wd = scaling.from_adamw(adamw_lr, adamw_weight_decay, factor=f)
        except ValueError as e:
            raise _invalid("adamw_lr", str(e)) from None
        _check_finite(lr, wd, "factor")
        return schemas.AnalyticRuleOut(lr=lr, weight_decay=wd, product=lr * wd, factor=f)
    if width is None and sigma is None:
        raise _missing()
    if factor is not None:
        raise _invalid(
            "factor",
            "factor belongs to the AdamW conversion (with adamw_lr and "
            "adamw_weight_decay); the width rule takes width or sigma, and alpha0",
        )
    if width is not None and sigma is not None:
        raise _invalid("sigma", "give width or sigma, not both (sigma = width**-0.5)")
    a0 = scaling.ALPHA0 if alpha0 is None else alpha0
    try:
        lr, wd = scaling.lr_and_decay(sigma=sigma, width=width, alpha0=a0)
    except ValueError as e:
        raise _invalid("width" if sigma is None else "sigma", str(e)) from None
    _check_finite(lr, wd, "width" if sigma is None else "sigma")
    s = sigma if sigma is not None else width**-0.5
    return schemas.AnalyticRuleOut(lr=lr, weight_decay=wd, product=lr * wd, sigma=s, alpha0=a0)
