#!/usr/bin/env bash
# Build the wheel and use it as a user would, outside the source tree:
#   1. build lionsweep's wheel from a clean copy of the tree;
#   2. install it non-editable with the `server` extra into a fresh venv and run
#      `lionsweep up --demo` in an empty directory until the demo sweep is complete;
#   3. install it without extras into another fresh venv (a GPU node's install) and run a
#      worker from it against `lionsweep serve` from the first venv, checking it ran trials.
# torch==2.13.0 goes in first each time, so pip never pulls a CUDA build.
# Usage: .ci/install_check.sh   (DEMO_TIMEOUT=seconds bounds the demo; default 240)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-240}
export PIP_DISABLE_PIP_VERSION_CHECK=1
work=$(mktemp -d -t lionsweep-install.XXXXXX)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait || true  # a venv still being made, after an early failure
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '+ [%3ss] %s\n' "$SECONDS" "$*"; }

fail() {
    echo "install check: $*" >&2
    for log in "$work"/run/.lionsweep-logs/*.log "$work"/*.log; do
        [ -f "$log" ] && { echo "--- $log (last lines)" >&2; tail -n 20 "$log" >&2; }
    done
    exit 1
}

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Wait (at most $2 seconds) until python snippet $1, run by the server venv, prints "yes".
wait_until() {
    local deadline=$((SECONDS + $2))
    until [ "$("$work/server/bin/python" -c "$1" 2>/dev/null)" = yes ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 2
    done
}

# pip install into venv $1; no byte-compiling (over half of torch's install time): Python
# compiles what it imports.
install() { "$1/bin/pip" install -q --no-compile "${@:2}"; }

fresh_venv() {
    "$PYTHON" -m venv "$1"
    install "$1" torch==2.13.0
}

step "copy the source tree (tracked and unignored files) and build the wheel"
mkdir -p "$work/src" "$work/dist" "$work/run" "$work/node"
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$work/src"
fresh_venv "$work/server" &
server_venv=$!
fresh_venv "$work/worker" &
worker_venv=$!
wait "$server_venv" || fail "could not make the server venv"
"$work/server/bin/pip" wheel -q --no-deps "$work/src" -w "$work/dist"
wheel=$(ls "$work"/dist/lionsweep-*.whl)
"$PYTHON" - "$wheel" <<'EOF' || fail "the wheel lacks files the server needs"
import sys
import zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = {
    "service/migrations/env.py",
    "service/migrations/script.py.mako",
    "service/migrations/versions/0001_sweeps_workers_tokens.py",
    "service/dashboard/static/style.css",
    "service/dashboard/templates/index.html",
    "optim/lion_cpu.c",
}
missing = sorted(needed - names)
assert not missing, f"missing: {missing}"
assert not any(n.startswith("migrations/") for n in names), "a top-level migrations/"
EOF

step "install $(basename "$wheel")[server] into a fresh venv"
install "$work/server" "$wheel[server]"
(cd "$work/node" && LIONSWEEP_DATABASE_URL="sqlite:///$work/node/upgrade.db" \
    "$work/server/bin/lionsweep" db upgrade) || fail "lionsweep db upgrade exited $?"

port=$(free_port)
url="http://127.0.0.1:$port"
step "lionsweep up --demo in an empty directory ($url)"
(cd "$work/run" && exec "$work/server/bin/lionsweep" up --demo --port "$port" --workers 1) \
    >"$work/up.log" 2>&1 &
up=$!
pids+=("$up")
demo_done="import httpx
s = [s for s in httpx.get('$url/api/sweeps', timeout=5).json()['items'] if s['name'] == 'demo']
print('yes' if s and s[0]['status'] == 'complete' else 'no')"
wait_until "$demo_done" "$DEMO_TIMEOUT" || fail "the demo sweep did not complete in ${DEMO_TIMEOUT}s"
step "the demo sweep is complete; the dashboard, its files and the API docs answer"
"$work/server/bin/python" - "$url" <<'EOF' || fail "a page did not answer"
import sys

import httpx

url = sys.argv[1]
for path in ("/", "/sweeps/1", "/static/style.css", "/docs", "/redoc",
             "/api-docs-static/redoc.standalone.js", "/openapi.json"):
    response = httpx.get(url + path, timeout=10)
    assert response.status_code == 200, f"{path}: {response.status_code}"
EOF
kill -INT "$up"
wait "$up" || fail "lionsweep up exited $? after Ctrl-C"
grep -q "Demo sweep 1: $url/sweeps/1" "$work/up.log" || fail "up did not print the demo's link"

wait "$worker_venv" || fail "could not make the worker venv"
step "install $(basename "$wheel") (no extras) into another fresh venv"
install "$work/worker" "$wheel"
if "$work/worker/bin/python" -c "import fastapi" 2>/dev/null; then
    fail "the worker-only install has the server's packages"
fi

step "lionsweep serve (server venv) and a worker from the worker-only venv"
(cd "$work/run" && exec "$work/server/bin/lionsweep" serve --port "$port") >"$work/serve.log" 2>&1 &
serve=$!
pids+=("$serve")
wait_until "import httpx; print('yes' if httpx.get('$url/healthz').status_code == 200 else 'no')" 60 \
    || fail "lionsweep serve did not answer"
cat >"$work/small.yaml" <<'EOF'
name: install-check
task: {name: quadratic, params: {}}
space: {lr: {low: 1.0e-4, high: 3.0e-2, log: true}}
sampler: {name: random, seed: 0}
pruner: {name: none}
n_trials: 4
reevaluate: "off"
EOF
"$work/server/bin/lionsweep" submit "$work/small.yaml" --server "$url"
(cd "$work/node" && exec timeout 120 "$work/worker/bin/lionsweep" worker --server "$url" \
    --device cpu --idle-exit 5) >"$work/worker.log" 2>&1 || fail "the worker exited $?"
ran=$(grep -cE 'trial [0-9]+ \(sweep 2, id [0-9]+\) (complete|pruned)' "$work/worker.log" || true)
[ "$ran" -eq 4 ] || fail "the worker-only install ran $ran of the 4 trials"
small_done="import httpx
s = httpx.get('$url/api/sweeps/2', timeout=5).json()
print('yes' if s['status'] == 'complete' and s['finished'] == 4 else 'no')"
wait_until "$small_done" 10 || fail "the server does not show sweep 2 complete"
kill -INT "$serve"
wait "$serve" || fail "lionsweep serve exited $? after Ctrl-C"
step "install check passed"
