# A small PostgreSQL image for bench/compose_check.sh, built on the same local Debian base as
# the project image (an image registry is not needed): Debian's postgresql, no cluster made at
# install time; the entrypoint makes one on first start, as the official postgres image does.
#   docker build --network host -f bench/compose/postgres.Dockerfile \
#       --build-arg BASE_IMAGE=lionsweep-base:bookworm -t lionsweep-postgres:check bench/compose
ARG BASE_IMAGE=lionsweep-base:bookworm
FROM ${BASE_IMAGE}

ARG PG_MAJOR=15
ENV PG_MAJOR=${PG_MAJOR} \
    PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data

# No services start inside a build; no default cluster (the entrypoint initdb's into PGDATA).
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
    && sed -ri 's/#?\s*create_main_cluster = .*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "postgresql-${PG_MAJOR}" \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && mkdir -p "$PGDATA" /var/run/postgresql \
    && chown postgres:postgres "$PGDATA" /var/run/postgresql \
    && chmod 700 "$PGDATA"

COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
# A fresh named volume on PGDATA takes this directory's owner, so the server runs unprivileged.
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
