"""A Hugging Face ``Trainer`` callback that reports to a lionsweep trial (extra ``hf``)::

    from lionsweep.integrations.hf import LionsweepCallback, optimizers

    with lionsweep.current_trial() as trial:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(..., max_steps=1000, eval_strategy="steps", eval_steps=100),
            optimizers=optimizers(trial, model, total_steps=1000),  # Lion + warmup schedule
            callbacks=[LionsweepCallback(trial)],
        )
        trainer.train()  # reports eval_loss at each evaluation; stops when pruned

At the end of training the callback finishes the trial with the last reported value
(``pruned`` when the server pruned it). Under ``torchrun`` every rank runs the callback and
stops at the same step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lionsweep.trial import Trial


def optimizers(
    trial: Trial, model: torch.nn.Module, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """``(optimizer, lr_scheduler)`` for ``Trainer(optimizers=...)``: the trial's
    ``optim.Lion`` (AdamW for a baseline arm) and its warmup schedule over ``total_steps``."""
    optimizer = trial.optimizer(model)
    return optimizer, trial.schedule(optimizer, total_steps)


class LionsweepCallback(TrainerCallback):
    """Reports ``metric`` at each evaluation and stops training when the trial should stop.

    ``trial`` defaults to :func:`lionsweep.current_trial`. ``metric`` defaults to the
    sweep's objective metric as the Trainer names it: ``eval_<metric>``, and ``eval_loss``
    for the default objective ``val_loss``. With ``finish=True`` (the default) the trial is
    finished when training ends, with the last reported value.
    """

    def __init__(
        self, trial: Trial | None = None, metric: str | None = None, *, finish: bool = True
    ) -> None:
        if trial is None:
            from lionsweep.loop import current_trial

            trial = current_trial()
        self.trial = trial
        self.metric = metric
        self.finish = finish

    def _value(self, metrics: dict[str, Any]) -> float:
        """The objective's value among the Trainer's evaluation ``metrics``."""
        wanted = self.trial.metric
        names = [self.metric] if self.metric else [wanted, f"eval_{wanted}"]
        if self.metric is None and wanted == "val_loss":
            names.append("eval_loss")
        for name in names:
            if name in metrics:
                return float(metrics[name])
        raise KeyError(
            f"the evaluation reports no {' or '.join(map(repr, names))} (it reports: "
            f"{', '.join(sorted(metrics))}); pass LionsweepCallback(metric=...)"
        )

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Report the objective at this step; ask the Trainer to stop when told to."""
        metrics = metrics or {}
        others = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        if self.trial.report(state.global_step, self._value(metrics), **others):
            control.should_training_stop = True

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Stop at this step when the trial should stop (a prune, a stop, SIGTERM)."""
        if self.trial.should_stop:
            control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Finish the trial with the last reported value (unless ``finish=False``)."""
        if self.finish and self.trial.state is None:
            self.trial.finish()
