"""Sweep a Hugging Face ``Trainer`` run: a tiny GPT-2 (random weights, from a config) on
synthetic token ids, trained with each trial's Lion config (needs the ``hf`` extra).

Claim trials yourself, or let a worker run this program per trial::

    python examples/hf_trainer.py --server http://127.0.0.1:8000 --sweep 1
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import lionsweep
from lionsweep.integrations.hf import LionsweepCallback, optimizers

VOCAB, LENGTH = 64, 16


class Repeats(torch.utils.data.Dataset):
    """Sequences that repeat a short random motif: learnable, no tokenizer needed."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        motif = torch.randint(0, VOCAB, (n, 4), generator=g)
        self.ids = motif.repeat(1, LENGTH // 4)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def train(trial: lionsweep.Trial, steps: int, eval_every: int, out: str) -> None:
    """Train one trial; the callback reports eval_loss, stops on a prune and finishes."""
    torch.manual_seed(trial.seed)
    config = GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=int(trial.params.get("batch_size", 16)),
        eval_strategy="steps",
        eval_steps=eval_every,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=trial.seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Repeats(512, seed=0),
        eval_dataset=Repeats(64, seed=1),
        optimizers=optimizers(trial, model, total_steps=steps),
        callbacks=[LionsweepCallback(trial)],
    )
    trainer.train()
    print(f"trial {trial.number} {trial.state} at step {trainer.state.global_step}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("LIONSWEEP_SERVER"))
    parser.add_argument("--sweep", type=int)
    parser.add_argument("--token", default=os.environ.get("LIONSWEEP_TOKEN"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--max-trials", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        if os.environ.get("LIONSWEEP_TRIAL_ID"):  # launched by a worker for one trial
            with lionsweep.current_trial() as trial:
                train(trial, args.steps, args.eval_every, out)
            return
        for trial in lionsweep.trials(
            args.server, sweep=args.sweep, token=args.token, max_trials=args.max_trials
        ):
            with trial:
                train(trial, args.steps, args.eval_every, out)


if __name__ == "__main__":
    main()
