"""One trial of a sweep, as user code sees it: params, optimizer, schedule, report, finish.

A :class:`Trial` comes from :func:`lionsweep.trials` (this process claimed it) or
:func:`lionsweep.current_trial` (a worker claimed it and launched this program). Under
``torch.distributed`` every rank holds the trial, only rank 0 talks to the server, and
:meth:`Trial.report` broadcasts rank 0's stop decision so all ranks stop at the same step.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lionsweep import distributed
from lionsweep.errors import ClientError, translated
from protocol import (
    DEFAULT_HEARTBEAT_INTERVAL,
    PRUNE,
    SHUTDOWN_FINISH_DEADLINE,
    SHUTDOWN_REASON,
    STOPPED_REASON,
    json_metrics,
)
from worker import client as http
from worker.runtime import Interrupt

if TYPE_CHECKING:
    import torch

    from worker.harness import TrialConfig
    from worker.tasks import TaskDefaults

log = logging.getLogger("lionsweep")

# What rank 0 broadcasts after a report: why (or whether) the trial must stop.
_CONTINUE, _PRUNE, _STOP, _SHUTDOWN, _ENDED = range(5)


@dataclass(frozen=True)
class _OwnCode:
    """A stand-in task for user code, so ``worker.harness`` maps params to a config."""

    name: str
    defaults: TaskDefaults


class Trial:
    """A claimed trial: its params and seed, its optimizer and schedule, and its reports.

    Use it as a context manager (``with trial: ...``): an exception inside fails the trial
    with the reason ``"ExcType: message"`` (Ctrl-C hands it back as ``worker shutdown``)
    and propagates; leaving the block without :meth:`finish` ends the trial as
    :meth:`finish` with no value does.
    """

    def __init__(
        self,
        assignment: dict[str, Any],
        *,
        client: http.Client | None,
        worker_id: str | None = None,
        shutdown: threading.Event | None = None,
    ) -> None:
        self.assignment = dict(assignment)
        self.id = int(assignment["trial_id"])
        self.number = int(assignment.get("trial_number", -1))
        self.sweep_id = int(assignment.get("sweep_id", -1))
        self.params: dict[str, Any] = dict(assignment.get("params") or {})
        self.seed = int(assignment.get("seed", 0))
        task = assignment.get("task") or {}
        self.task_name = str(task.get("name", ""))
        self.task_params: dict[str, Any] = dict(task.get("params") or {})
        objective = assignment.get("objective") or {}
        self.metric = str(objective.get("metric", "val_loss"))
        self.direction = str(objective.get("direction", "minimize"))
        self.max_steps: int | None = (assignment.get("budget") or {}).get("max_steps")
        self.worker_id = worker_id
        self._client = client
        interval = float(assignment.get("heartbeat_interval") or DEFAULT_HEARTBEAT_INTERVAL)
        # Reports the server could not take (it is away) wait here while training goes on.
        self._reports = http.Reports(client, self.id, 2 * interval) if client else None
        #: Why training must stop: a shutdown (SIGTERM, Ctrl-C), or the server's answer.
        self._interrupt = Interrupt(shutdown)
        self._decided = False  # the last stop decision broadcast to every rank
        self._lock = threading.Lock()
        self._ended: str | None = None  # the state this trial finished in
        self._last_value: float | None = None
        self._total_steps: int | None = None

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, sweep={self.sweep_id}, params={self.params})"

    # ---- what the trial is --------------------------------------------------------------

    @property
    def _what(self) -> str:
        return f"trial {self.number} of sweep {self.sweep_id}"

    @property
    def server(self) -> str | None:
        """The server's base URL (``None`` on ranks other than 0)."""
        return self._client.server if self._client is not None else None

    def config(self, total_steps: int = 1) -> TrialConfig:
        """The trial's hyperparameters resolved as the built-in harness resolves them
        (``worker.harness.effective_config``): optimizer, lr, weight_decay, beta1, beta2,
        warmup_steps, batch_size, with the harness's defaults for what the sweep leaves out."""
        from worker.harness import effective_config
        from worker.tasks import TaskDefaults

        loop = {k: v for k, v in self.task_params.items() if k == "decay_all"}
        task = _OwnCode(self.task_name or "own-code", TaskDefaults(steps=total_steps))
        trimmed = {"params": self.params, "task": {"name": task.name, "params": loop}}
        return effective_config(task, {**trimmed, "seed": self.seed}, "cpu")

    @property
    def optimizer_name(self) -> str:
        """``"lion"``, or ``"adamw"`` for a trial of the AdamW baseline arm."""
        return self.config().optimizer

    @property
    def lr(self) -> float:
        """The trial's learning rate."""
        return self.config().lr

    @property
    def weight_decay(self) -> float:
        """The trial's (decoupled) weight decay."""
        return self.config().weight_decay

    @property
    def betas(self) -> tuple[float, float]:
        """The trial's ``(beta1, beta2)``."""
        config = self.config()
        return (config.beta1, config.beta2)

    @property
    def warmup_steps(self) -> int:
        """Linear warmup steps of :meth:`schedule` (0 unless the sweep sets them)."""
        return self.config().warmup_steps

    # ---- building blocks ----------------------------------------------------------------

    def optimizer(
        self, params: torch.nn.Module | Iterable[Any], **kwargs: Any
    ) -> torch.optim.Optimizer:
        """``optim.Lion`` (``torch.optim.AdamW`` for the AdamW baseline arm) with the trial's
        lr, betas and weight decay.

        ``params`` is a model (weight decay then goes on matrices only, as the built-in
        harness does), or parameters or param groups (the trial's weight decay is their
        default). ``kwargs`` go to the optimizer; Lion's ``impl`` defaults to
        ``$LIONSWEEP_LION_IMPL`` (else ``auto``), as in the built-in harness.
        """
        from worker.harness import make_optimizer

        # A user's loop may let zero_grad() set gradients to None: no flat buffers unless asked.
        flatten = kwargs.pop("flatten", False)
        return make_optimizer(self.config(), params, flatten=flatten, **kwargs)

    def schedule(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """The trial's lr schedule over ``total_steps`` (call ``.step()`` after each optimizer
        step): linear warmup over the trial's ``warmup_steps``, then cosine decay to 0."""
        from worker.harness import make_schedule

        self._total_steps = int(total_steps)
        return make_schedule(self.config(self._total_steps), optimizer)

    def seed_everything(self) -> torch.Generator:
        """Seed Python, NumPy and torch with the trial's seed; return a seeded CPU generator."""
        from worker.harness import seed_everything

        return seed_everything(self.seed)

    # ---- talking to the server ----------------------------------------------------------

    @property
    def should_stop(self) -> bool:
        """Whether training should stop now: pruned, stopped by the server, a shutdown
        (SIGTERM), or the trial already ended. Under ``torch.distributed``: as of the last
        :meth:`report`, so that every rank reads the same answer."""
        if distributed.active():
            return self._decided
        return self._ended is not None or self._interrupt.outcome() is not None

    @property
    def should_prune(self) -> bool:
        """Whether the server's pruner asked to stop this trial as unpromising."""
        return self._interrupt.asked == ("pruned", None)

    @property
    def state(self) -> str | None:
        """How the trial ended (``complete``, ``pruned``, ``failed``), or ``None`` while it runs."""
        return self._ended

    def report(self, step: int, value: float, /, **metrics: Any) -> bool:
        """Report the objective's ``value`` at ``step`` (and other numbers as ``metrics``);
        return :attr:`should_stop`, the server's answer included.

        While the server (or its database) is away the report is kept, the answer is
        "go on", and kept reports are delivered in order once it is back (at the latest
        before the trial's finish).

        A non-finite value fails the trial at once (the answer is then True). Under
        ``torch.distributed`` call it on every rank at the same steps: rank 0 reports its
        value and every rank gets rank 0's answer.
        """
        error: ClientError | None = None
        if self._client is not None:
            try:
                self._report(int(step), float(value), metrics)
            except ClientError as exc:
                error = exc
        if distributed.active():
            code = distributed.broadcast_code(self._code())
            self._learn(code)
            self._decided = self._decided or code != _CONTINUE
        if error is not None:
            raise error
        return self.should_stop

    def _report(self, step: int, value: float, metrics: dict[str, Any]) -> None:
        if self._ended is not None:
            return  # nothing more is sent about an ended trial
        if not math.isfinite(value):
            self.fail(f"non-finite value {value} reported at step {step}")
            return
        self._last_value = value
        assert self._client is not None and self._reports is not None
        try:
            with translated(self._client.server, self._what):
                action = self._reports.send(step, value, json_metrics(metrics))
        except ClientError as exc:
            if getattr(exc, "status_code", None) != 409:
                raise
            log.warning("trial %d: report refused (%s); stopping it", self.number, exc)
            self._ended = "failed"  # someone else ended it (the lease ran out, a worker)
            return
        if action is not None:  # None: kept until the server is back; training goes on
            self._interrupt.answer(action)

    def stop(self, reason: str) -> None:
        """Ask training to stop; the trial will end ``failed`` with ``reason`` (first one wins)."""
        self._interrupt.stop(reason)

    def _code(self) -> int:
        if self._ended is not None:
            return _ENDED
        if self._interrupt.shutdown.is_set():
            return _SHUTDOWN
        if self._interrupt.asked is None:
            return _CONTINUE
        return _PRUNE if self._interrupt.asked[0] == "pruned" else _STOP

    def _learn(self, code: int) -> None:
        """Take rank 0's decision on a rank that does not talk to the server."""
        if self._client is not None or code == _CONTINUE:
            return
        if code == _PRUNE:
            self._interrupt.answer(PRUNE)
        elif code == _SHUTDOWN:
            self._interrupt.shutdown.set()
        elif code == _STOP:
            self.stop(STOPPED_REASON)
        else:
            self._ended = "failed"

    def finish(self, value: float | None = None, /, **metrics: Any) -> str:
        """End the trial; return the state recorded (``complete``, ``pruned``, ``failed``).

        ``complete`` with ``value`` (default: the last reported value) unless the server
        asked to prune (``pruned``) or stop, or a shutdown is under way (``failed``, reason
        ``stopped by server`` / ``worker shutdown``). A non-finite value, or none at all,
        fails the trial with a reason saying so. Finishing again changes nothing. The end is
        retried until the server takes it, however long it is away (during a shutdown, for
        20 s at most).
        """
        if value is not None:
            value = float(value)
        if value is None:
            value = self._last_value
        outcome = self._interrupt.outcome()  # a shutdown, else what the server asked
        if outcome is not None:
            return self._end(outcome[0], value, metrics, outcome[1])
        if value is None:
            reason = "finished without a value: call trial.finish(value) or trial.report(step, v)"
            return self._end("failed", None, metrics, reason)
        if not math.isfinite(value):
            return self._end("failed", None, metrics, f"non-finite final value {value}")
        return self._end("complete", value, metrics, None)

    def fail(self, reason: str) -> str:
        """End the trial ``failed`` with ``reason`` (the server re-queues it while retries
        remain); return the state recorded."""
        return self._end("failed", None, {}, str(reason))

    def _end(
        self,
        state: str,
        value: float | None,
        metrics: dict[str, Any],
        reason: str | None,
        deadline: float | None = None,
    ) -> str:
        """Record the end once (on rank 0: tell the server); return the recorded state."""
        with self._lock:
            if self._ended is not None:
                return self._ended
            self._ended = state
        if self._client is None:
            return state
        if value is not None and not math.isfinite(value):
            value = None
        if deadline is None and self._interrupt.shutdown.is_set():
            deadline = SHUTDOWN_FINISH_DEADLINE
        log.info(
            "trial %d (sweep %d) %s value=%s%s",
            self.number,
            self.sweep_id,
            state,
            value,
            f" reason={reason}" if reason else "",
        )
        if self._reports is not None and self._reports.kept:
            try:  # the reports kept while the server was away go first
                with translated(self._client.server, self._what):
                    self._reports.flush(deadline)
            except ClientError as exc:
                log.warning("trial %d: reports kept for later not delivered (%s)", self.number, exc)
        try:
            with translated(self._client.server, self._what):
                self._client.finish(
                    self.id,
                    state,
                    value if state == "complete" else None,
                    json_metrics(metrics),
                    self._effective_config(),
                    reason[:2000] if reason else None,
                    deadline=deadline,
                    handed_back=state == "failed" and reason == SHUTDOWN_REASON,
                )
        except ClientError as exc:
            if getattr(exc, "status_code", None) != 409:
                raise
            log.warning("trial %d: finish refused (%s)", self.number, exc)
        return state

    def _effective_config(self) -> dict[str, Any]:
        """What the trial trained with, as far as the client knows (stored with the trial)."""
        try:
            config = self.config()
        except ValueError:  # params the harness refuses: the trial fails for them anyway
            return {"seed": self.seed}
        keys = ("optimizer", "lr", "weight_decay", "beta1", "beta2", "warmup_steps", "seed")
        out = {k: getattr(config, k) for k in keys}
        if self._total_steps is not None:
            out["total_steps"] = self._total_steps
        out["world_size"] = distributed.world_size()
        return out

    # ---- with trial: ... ----------------------------------------------------------------

    def __enter__(self) -> Trial:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            if self._ended is None:
                self.finish()
            return
        if isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, SystemExit) and self._interrupt.shutdown.is_set()
        ):
            # An interrupt (Ctrl-C, or an exit while a SIGTERM is handled) hands it back; a
            # plain sys.exit() is the program's own end and fails the trial like an error.
            self._interrupt.shutdown.set()
            self._end_quietly("failed", SHUTDOWN_REASON)
        else:
            self._end_quietly("failed", f"{type(exc).__name__}: {exc}")

    def _end_quietly(self, state: str, reason: str) -> None:
        """End the trial while another error is on its way out: report, never raise."""
        try:
            self._end(state, None, {}, reason)
        except ClientError as exc:
            log.error("trial %d: could not record its end (%s)", self.number, exc)
