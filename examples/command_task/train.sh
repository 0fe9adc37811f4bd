#!/bin/sh
# A command task without Python: Lion's update rule on a small ill-conditioned quadratic,
# in awk. The worker runs it once per trial (see commands.toml) with the trial in its
# environment, and reads what it prints with the line protocol of worker/command_runner.py:
#   lionsweep: {"step": 20, "value": 0.25}   an intermediate value (relayed to the server)
#   lionsweep: {"final": 0.01}               the trial's final value
# Every other line goes to the worker's log. When the server prunes or cancels the trial,
# the worker sends this program's process group SIGTERM (SIGKILL after stop_grace).
# Values come from the environment as JSON text and are never evaluated by a shell.
set -eu
echo "trial $LIONSWEEP_TRIAL_ID: lr=$LIONSWEEP_PARAM_LR steps=$LIONSWEEP_TASK_PARAM_STEPS"
exec awk 'function sign(v) { return v > 0 ? 1 : (v < 0 ? -1 : 0) }
function num(name, fallback) { return (name in ENVIRON) ? ENVIRON[name] + 0 : fallback }
BEGIN {
    lr = num("LIONSWEEP_PARAM_LR", 1e-3)
    wd = num("LIONSWEEP_PARAM_WEIGHT_DECAY", 0)
    b1 = num("LIONSWEEP_PARAM_BETA1", 0.9)
    b2 = num("LIONSWEEP_PARAM_BETA2", 0.99)
    steps = num("LIONSWEEP_TASK_PARAM_STEPS", 200)
    every = num("LIONSWEEP_TASK_PARAM_REPORT_EVERY", 20)
    delay = num("LIONSWEEP_TASK_PARAM_STEP_DELAY", 0)
    srand(num("LIONSWEEP_SEED", 0) % 2147483647)
    dim = 8
    for (i = 0; i < dim; i++) {
        h[i] = 10 ^ (2 * i / (dim - 1))      # curvatures 1 … 100
        x[i] = 0.5 + rand(); m[i] = 0; t[i] = 0.25
    }
    for (s = 1; s <= steps; s++) {
        loss = 0
        for (i = 0; i < dim; i++) {
            g = h[i] * (x[i] - t[i])
            c = b1 * m[i] + (1 - b1) * g
            x[i] -= lr * (sign(c) + wd * x[i])
            m[i] = b2 * m[i] + (1 - b2) * g
            loss += 0.5 * h[i] * (x[i] - t[i]) ^ 2
        }
        if (loss != loss || loss > 1e30) { print "diverged at step " s > "/dev/stderr"; exit 1 }
        if (s % every == 0 || s == steps) {
            printf "lionsweep: {\"step\": %d, \"value\": %.8g}\n", s, loss
            fflush()
        }
        if (delay > 0) system("sleep " delay)
    }
    printf "lionsweep: {\"final\": %.8g}\n", loss
}'
