# lionsweep: the API server and the GPU worker share this image.
#   docker build -t lionsweep:latest .
#   docker run --rm lionsweep:latest --help
# The base: an official PyTorch CUDA runtime image by default. Any base with python and pip
# on PATH and torch (>=2.4,<2.14) installed will do (pip keeps it), e.g. the CPU-only Debian
# base that bench/compose_check.sh makes: --build-arg BASE_IMAGE=lionsweep-base:bookworm
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# A C and C++ compiler: Triton builds its kernel launchers with one at first use on a GPU,
# torch.compile's CPU kernels need one, and optim's native CPU step is built with one.
# Without them Lion's fused steps fall back to the foreach step (with a warning).
RUN if ! command -v cc > /dev/null && command -v apt-get > /dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# Dependencies first (cached while only the source changes): install from pyproject with
# empty packages, then the source tree itself (editable; the Alembic migrations ship inside
# the service package, service/migrations). The image serves both roles, so it has the
# server extra; a GPU node without Docker needs only `pip install .`.
COPY pyproject.toml README.md ./
RUN mkdir -p lionsweep optim protocol service worker \
    && touch lionsweep/__init__.py optim/__init__.py protocol/__init__.py service/__init__.py \
        worker/__init__.py \
    && pip install '.[server]' \
    && pip uninstall -y lionsweep \
    && rm -rf lionsweep optim protocol service worker build *.egg-info

COPY lionsweep ./lionsweep
COPY optim ./optim
COPY protocol ./protocol
COPY service ./service
COPY worker ./worker
COPY bench ./bench
COPY examples ./examples
RUN pip install --no-deps -e . \
    && lionsweep --help > /dev/null

# Run as an unprivileged user; the worker's data caches go to its home.
RUN useradd --create-home --uid 1000 lionsweep && chown -R lionsweep /app
USER lionsweep

EXPOSE 8000
ENTRYPOINT ["lionsweep"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
