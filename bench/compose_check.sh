#!/bin/bash
# bench/compose_check.sh: run docker-compose.yml and the Dockerfile for real on one host with
# no GPU and no image registry, end to end, and tear it all down again.
#
#   sudo bench/compose_check.sh [--rebuild-base] [--no-cache] [--remove-images] [--trials N]
#                               [--pg-port P] [--api-port P] [--timeout S] [--ca-bundle F]
#
# What it does, one timed phase each:
#   base       a local base image, lionsweep-base:bookworm: Debian bookworm (debootstrap
#              minbase from deb.debian.org) with a venv in /opt/venv holding the CPU build of
#              torch (the local wheel in /opt/wheels, or TORCH_WHEEL=...; its dependencies come
#              from PyPI). Kept between runs; --rebuild-base makes it again. The host's CA
#              bundle (--ca-bundle FILE, default /etc/ssl/certs/ca-certificates.crt) is added to
#              the image's trusted CAs, and pip uses them (/etc/pip.conf).
#   image      the project image, lionsweep:latest, from the Dockerfile on that base
#              (--build-arg BASE_IMAGE=lionsweep-base:bookworm, host networking for PyPI);
#              --no-cache builds it (and the next one) without the layer cache.
#   postgres   lionsweep-postgres:check, Debian's PostgreSQL on the same base
#              (bench/compose/postgres.Dockerfile), standing in for postgres:16.
#   up         docker-compose.yml + bench/compose/override.yml (every service on the host's
#              network, PostgreSQL on 127.0.0.1:--pg-port, the API on 127.0.0.1:--api-port,
#              one CPU worker in place of the GPU workers), merged with `docker-compose
#              config` and the api's `ports:` dropped (v1 refuses them on the host network),
#              then `up -d postgres api cpu-worker` until /healthz answers.
#   sweep      submits the built-in `quadratic` task (--trials trials, reevaluate off), waits
#              until it is complete (at most --timeout seconds), checks the dashboard (GET /
#              and the bundled plotly.js) and prints the best config with the image's CLI.
#   down       docker-compose down -v: containers, network and volumes (also on failure);
#              the images stay unless --remove-images.
# It prints each phase's time and the total, and exits non-zero on any failure.
#
# Needs: root, bash, a Docker engine (if none answers, it starts `dockerd --iptables=false
# --bridge=none` and stops it at the end), docker-compose (v1, Debian's), debootstrap (for the
# base image), curl and python3; network access to deb.debian.org and PyPI (not Docker Hub).
# Secrets (LIONSWEEP_TOKEN, POSTGRES_PASSWORD) are random, in a temporary env file; the
# repository's .env is neither read nor written.
#
# Time on a 2-core VM with a fast mirror: about 3.5 minutes cold (base image 95 s: debootstrap
# and torch's dependencies; project image 55 s; PostgreSQL image 30 s; stack up, an 8-trial
# sweep and teardown 40 s), about 2 minutes with the base kept and --no-cache, under a minute
# when nothing changed. The three images take about 1.8 GB on disk (they share the base).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_IMAGE=lionsweep-base:bookworm
PROJECT_IMAGE=lionsweep:latest
PG_IMAGE=lionsweep-postgres:check
PROJECT=lionsweep-check
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TORCH_WHEEL=${TORCH_WHEEL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
REBUILD_BASE=0
REMOVE_IMAGES=0
NO_CACHE=()
TRIALS=8
PG_PORT=55432
API_PORT=18000
TIMEOUT=300

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --rebuild-base) REBUILD_BASE=1 ;;
        --remove-images) REMOVE_IMAGES=1 ;;
        --no-cache) NO_CACHE=(--no-cache) ;;
        --trials) TRIALS=$2; shift ;;
        --pg-port) PG_PORT=$2; shift ;;
        --api-port) API_PORT=$2; shift ;;
        --timeout) TIMEOUT=$2; shift ;;
        --ca-bundle) CA_BUNDLE=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '\n== %s\n' "$*"; }
die() { printf 'compose_check: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and the Docker socket need it)"
for tool in docker docker-compose curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
# A python with PyYAML: docker-compose v1's own (Debian: /usr/bin/python3 with python3-yaml).
YAML_PY=
for py in "$(sed -n '1s/^#! *//p' "$(command -v docker-compose)")" python3; do
    if [ -n "$py" ] && "$py" -c 'import yaml' 2>/dev/null; then YAML_PY=$py; break; fi
done
[ -n "$YAML_PY" ] || die "no python3 with PyYAML (apt-get install python3-yaml)"

# Nothing from the caller's environment reaches docker-compose's interpolation.
for var in $(compgen -e); do
    case $var in LIONSWEEP_* | POSTGRES_* | CHECK_*) unset "$var" ;; esac
done
export DOCKER_BUILDKIT=0 # the engine's own builder: --network host and build args, no buildx

WORK=$(mktemp -d /var/tmp/lionsweep-check.XXXXXX)
DOCKERD_PID=
STACK_UP=0
declare -a PHASES=()
START=$SECONDS
PHASE_START=$SECONDS

# An image's id, empty when there is none; after a rebuild the old one is removed if unused.
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
drop_replaced() {
    if [ -n "$1" ] && [ "$1" != "$(image_id "$2")" ]; then
        docker image rm "$1" >/dev/null 2>&1 || true
    fi
}

phase_done() { PHASES+=("$(printf '%-9s %5ds' "$1" $((SECONDS - PHASE_START)))"); PHASE_START=$SECONDS; }

# docker-compose v1 refuses published ports on the host network ("host" network_mode is
# incompatible with port_bindings) and an override cannot remove the api's `ports:`, so the
# stack runs from the merged, interpolated configuration (`config`) with those ports dropped.
render_compose() {
    docker-compose --ansi never --env-file "$WORK/check.env" -p "$PROJECT" \
        -f "$ROOT/docker-compose.yml" -f "$ROOT/bench/compose/override.yml" config \
        >"$WORK/merged.yml"
    "$YAML_PY" - "$WORK/merged.yml" "$WORK/compose.yml" <<'PY'
import sys

import yaml

with open(sys.argv[1]) as f:
    spec = yaml.safe_load(f)
for service in spec["services"].values():
    if service.get("network_mode") == "host":
        service.pop("ports", None)
with open(sys.argv[2], "w") as f:
    yaml.safe_dump(spec, f, sort_keys=False)
PY
}

dc() {
    docker-compose --ansi never -p "$PROJECT" --project-directory "$ROOT" \
        -f "$WORK/compose.yml" "$@"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$STACK_UP" = 1 ]; then
        if [ "$rc" != 0 ]; then
            say "failed (exit $rc): the services' last log lines"
            dc logs --no-color --tail 40 || true
        fi
        say "down"
        PHASE_START=$SECONDS
        dc down -v --remove-orphans || rc=1
        phase_done down
    fi
    if [ "$REMOVE_IMAGES" = 1 ]; then
        docker image rm -f "$PROJECT_IMAGE" "$PG_IMAGE" "$BASE_IMAGE" >/dev/null 2>&1 || true
    fi
    if [ -d "$WORK/rootfs" ]; then
        umount -l "$WORK/rootfs/proc" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    if [ "${#PHASES[@]}" -gt 0 ]; then
        say "phase times"
        printf '  %s\n' "${PHASES[@]}"
        printf '  %-9s %5ds\n' total $((SECONDS - START))
    fi
    if [ "$rc" = 0 ]; then echo "compose check: OK"; else echo "compose check: FAILED" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- a Docker engine --------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || die "no Docker engine answers and dockerd is not installed"
    say "starting dockerd (log: $WORK/dockerd.log)"
    dockerd --iptables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "dockerd did not answer in 60 s"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free "$PG_PORT" || die "port $PG_PORT is in use (choose another with --pg-port)"
port_free "$API_PORT" || die "port $API_PORT is in use (choose another with --api-port)"

# -- base: Debian bookworm + /opt/venv with CPU torch -------------------------------------------
say "base image $BASE_IMAGE"
PHASE_START=$SECONDS
if [ "$REBUILD_BASE" = 1 ] || ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    [ -f "$TORCH_WHEEL" ] || die "no torch wheel at $TORCH_WHEEL (set TORCH_WHEEL)"
    [ -f "$CA_BUNDLE" ] || die "no CA bundle at $CA_BUNDLE (--ca-bundle FILE)"
    old_base=$(image_id "$BASE_IMAGE")
    rootfs=$WORK/rootfs
    # passwd: the Dockerfile's useradd; minbase has it, named so the dependency is explicit.
    debootstrap --variant=minbase \
        --include=python3,python3-venv,ca-certificates,passwd \
        bookworm "$rootfs" "$MIRROR"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    # The host's CA bundle joins the image's (a TLS-inspecting proxy on the way to PyPI has its
    # own CA), and pip, which otherwise trusts only its own certifi bundle, uses the system's.
    cp "$CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/host-ca-bundle.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    cp "$TORCH_WHEEL" "$rootfs/tmp/"
    mount -t proc proc "$rootfs/proc"
    in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$rootfs" "$@"; }
    in_root update-ca-certificates >/dev/null 2>&1
    in_root python3 -m venv /opt/venv
    in_root /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        "/tmp/$(basename "$TORCH_WHEEL")"
    in_root /opt/venv/bin/python -c 'import torch; print("torch", torch.__version__)'
    umount "$rootfs/proc"
    rm -f "$rootfs/tmp/$(basename "$TORCH_WHEEL")" "$rootfs/etc/resolv.conf"
    in_root apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/root/.cache
    tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' \
        --exclude='./sys/*' -c . |
        docker import \
            --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python"]' \
            - "$BASE_IMAGE"
    rm -rf "$rootfs"
    drop_replaced "$old_base" "$BASE_IMAGE"
else
    echo "kept (--rebuild-base makes it again)"
fi
docker run --rm --network host "$BASE_IMAGE" python -c 'import torch; print("torch", torch.__version__)'
phase_done base

# -- the project image ------------------------------------------------------------------------
say "project image $PROJECT_IMAGE"
old=$(image_id "$PROJECT_IMAGE")
docker build "${NO_CACHE[@]}" --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -t "$PROJECT_IMAGE" "$ROOT"
drop_replaced "$old" "$PROJECT_IMAGE"
docker run --rm "$PROJECT_IMAGE" --help >/dev/null
# The image has a C compiler: optim's native CPU step builds in it (as its unprivileged user).
docker run --rm --entrypoint python "$PROJECT_IMAGE" -c \
    "from optim import native; assert native.library() is not None, 'no native step'" \
    || die "the image cannot build optim's native CPU step (no working C compiler)"
phase_done image

# -- PostgreSQL -------------------------------------------------------------------------------
say "postgres image $PG_IMAGE"
old=$(image_id "$PG_IMAGE")
docker build "${NO_CACHE[@]}" --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f "$ROOT/bench/compose/postgres.Dockerfile" -t "$PG_IMAGE" "$ROOT/bench/compose"
drop_replaced "$old" "$PG_IMAGE"
phase_done postgres

# -- the stack --------------------------------------------------------------------------------
say "up: postgres, api, cpu-worker"
TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
cat >"$WORK/check.env" <<EOF
LIONSWEEP_TOKEN=$TOKEN
POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
CHECK_PG_IMAGE=$PG_IMAGE
CHECK_PG_PORT=$PG_PORT
CHECK_API_PORT=$API_PORT
EOF
chmod 600 "$WORK/check.env"
render_compose
API=http://127.0.0.1:$API_PORT
STACK_UP=1
dc down -v --remove-orphans >/dev/null 2>&1 || true # what a killed run left behind
dc up -d --no-build postgres api cpu-worker
for _ in $(seq 120); do curl -fsS "$API/healthz" >/dev/null 2>&1 && break; sleep 1; done
curl -fsS "$API/healthz" && echo
[ "$(docker inspect -f '{{.State.Running}}' "$(dc ps -q cpu-worker)")" = true ] ||
    die "the cpu-worker is not running"
phase_done up

# -- a sweep ----------------------------------------------------------------------------------
say "sweep: quadratic, $TRIALS trials"
auth=(-H "Authorization: Bearer $TOKEN")
spec=$(
    cat <<EOF
{"name": "compose-check", "task": {"name": "quadratic", "params": {}},
 "space": {"lr": {"low": 1e-4, "high": 3e-2, "log": true},
           "weight_decay": {"low": 1e-3, "high": 3.0, "log": true}},
 "objective": {"metric": "val_loss", "direction": "minimize"},
 "sampler": {"name": "tpe", "seed": 0}, "n_trials": $TRIALS, "reevaluate": "off"}
EOF
)
sweep_id=$(curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -d "$spec" \
    "$API/api/sweeps" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "sweep $sweep_id submitted"
deadline=$((SECONDS + TIMEOUT))
status=running
while [ "$status" = running ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "sweep $sweep_id not complete after ${TIMEOUT}s"
    sleep 2
    status=$(curl -fsS "${auth[@]}" "$API/api/sweeps/$sweep_id" | python3 -c \
        'import json, sys; print(json.load(sys.stdin)["status"])')
done
[ "$status" = complete ] || die "sweep $sweep_id ended $status"
# Every trial ran to an end on the worker (complete or pruned), none failed.
curl -fsS "${auth[@]}" "$API/api/sweeps/$sweep_id" | python3 -c '
import json, sys
counts, n = json.load(sys.stdin)["counts"], int(sys.argv[1])
print("trials:", ", ".join(f"{k} {v}" for k, v in counts.items() if v))
sys.exit(counts["failed"] or counts["complete"] + counts["pruned"] < n or counts["complete"] < 1)
' "$TRIALS" || die "sweep $sweep_id: failed or missing trials"
echo "sweep $sweep_id complete after $((SECONDS - PHASE_START))s"

# The dashboard: the page, its scripts and the plotly.js bundle it loads.
curl -fsS "$API/" -o "$WORK/index.html"
grep -qi '<html' "$WORK/index.html" || die "GET / is not the dashboard page"
curl -fsS "$API/sweeps/$sweep_id" -o "$WORK/sweep.html"
plotly=$(grep -o '/static/vendor/plotly-[^"]*\.min\.js' "$WORK/sweep.html" | head -n1)
[ -n "$plotly" ] || die "the sweep page names no plotly.js"
for asset in "$plotly" $(grep -o '/static/[a-z]*\.js' "$WORK/sweep.html" | sort -u); do
    size=$(curl -fsS "$API$asset" | wc -c)
    [ "$size" -gt 0 ] || die "GET $asset is empty"
    echo "dashboard: $asset $size bytes"
done

# The best config, printed by the image's own CLI.
docker run --rm --network host -e LIONSWEEP_TOKEN="$TOKEN" "$PROJECT_IMAGE" \
    best "$sweep_id" --k 3 --server "$API"
phase_done sweep
