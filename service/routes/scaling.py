"""The analytic Lion scaling rule (no sweep needed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from service import schemas
from service.auth import ReadScope

router = APIRouter(prefix="/api", tags=["scaling"])

Positive = Annotated[float | None, Query(gt=0)]


def _missing() -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "missing",
                "loc": ("query", "width"),
                "msg": "give width or sigma (with alpha0), or adamw_lr and adamw_weight_decay",
                "input": None,
            }
        ]
    )


@router.get("/scaling-rule", response_model=schemas.AnalyticRuleOut)
def scaling_rule(
    _: ReadScope,
    width: Positive = None,
    sigma: Positive = None,
    alpha0: Positive = None,
    adamw_lr: Positive = None,
    adamw_weight_decay: Annotated[float | None, Query(ge=0)] = None,
    factor: Positive = None,
) -> schemas.AnalyticRuleOut:
    """η = α0·σ, λ = α0/(2σ) from width/sigma, or lr/factor, wd·factor from an AdamW config."""
    from optim import scaling

    if adamw_lr is not None or adamw_weight_decay is not None:
        if adamw_lr is None or adamw_weight_decay is None:
            raise _missing()
        f = 3.0 if factor is None else factor
        lr, wd = scaling.from_adamw(adamw_lr, adamw_weight_decay, factor=f)
        return schemas.AnalyticRuleOut(lr=lr, weight_decay=wd, product=lr * wd, factor=f)
    if width is None and sigma is None:
        raise _missing()
    a0 = 1e-3 if alpha0 is None else alpha0
    lr, wd = scaling.lr_and_decay(sigma=sigma, width=width, alpha0=a0)
    s = sigma if sigma is not None else width**-0.5
    return schemas.AnalyticRuleOut(lr=lr, weight_decay=wd, product=lr * wd, sigma=s, alpha0=a0)
