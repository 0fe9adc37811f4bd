"""lionsweep: hyperparameter sweeps for the Lion optimizer.

``import lionsweep`` is the client for users' own training code::

    import lionsweep

    for trial in lionsweep.trials("http://127.0.0.1:8000", sweep=3, token=TOKEN):
        with trial:  # an exception fails the trial with its reason, then propagates
            torch.manual_seed(trial.seed)
            model = make_model()
            opt = trial.optimizer(model)  # optim.Lion (AdamW for a baseline arm)
            sched = trial.schedule(opt, total_steps=1000)  # the trial's warmup, then cosine
            for step in range(1, 1001):
                train_step(model, opt, sched)
                if step % 100 == 0 and trial.report(step, evaluate(model)):
                    break  # pruned, stopped by the server, or SIGTERM
            trial.finish(evaluate(model))

A program that a worker runs per trial gets its trial with :func:`current_trial`; under
``torchrun`` only rank 0 talks to the server and every rank learns a prune in the same
step. :func:`optimize` calls an objective per trial, as Optuna does. Errors are
:class:`ClientError` subclasses with one-line messages.

The package is also the ``lionsweep`` command line (``lionsweep.cli``), which composes the
server's (``service``), the worker's (``worker``) and the client's commands. Importing it
imports neither torch nor the server's packages.
"""

from lionsweep.errors import (
    AuthError,
    ClientError,
    NotFound,
    NoTrial,
    Refused,
    ServerUnreachable,
)
from lionsweep.loop import current_trial, optimize, trials
from lionsweep.trial import Trial

__all__ = [
    "AuthError",
    "ClientError",
    "NoTrial",
    "NotFound",
    "Refused",
    "ServerUnreachable",
    "Trial",
    "current_trial",
    "optimize",
    "trials",
]
