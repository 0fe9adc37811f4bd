"""Service settings, read from the environment (prefix ``LIONSWEEP_``)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HOST, DEFAULT_PORT

GRACE_TO_INTERVAL = 2.0
"""The heartbeat grace must be at least this many heartbeat intervals (one may be lost)."""


class Settings(BaseSettings):
    """Everything the control plane can be configured with."""

    model_config = SettingsConfigDict(env_prefix="LIONSWEEP_", extra="ignore")

    database_url: str = "sqlite:///./lionsweep.db"
    host: str = DEFAULT_HOST
    allowed_hosts: str = ""
    """Comma-separated host names the server answers to besides its bound address and the
    loopback names (``*``: any). Other ``Host`` headers get a 400 (against DNS rebinding);
    browser requests that change something must come from one of these origins or the
    server's own. With a wildcard bind (0.0.0.0) and none set, any Host is served."""
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    require_read_token: bool = False
    max_trials_cap: int = Field(default=10_000, ge=1)
    heartbeat_interval_seconds: float = Field(default=DEFAULT_HEARTBEAT_INTERVAL, gt=0)
    """How often workers send a heartbeat (told to them with each assignment)."""
    heartbeat_grace_seconds: float = Field(default=60.0, gt=0)
    """A running trial with no sign of life for this long is failed and re-queued."""
    reaper_interval_seconds: float = Field(default=5.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    bootstrap_token: str | None = None
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    claim_ahead_max: int = Field(default=16, ge=0, le=1000)
    """The most trials a sweep's sampler queues ahead of claims (asked trials that a claim
    takes without the sweep's lock). With at least 4 trials running, a sweep queues one per two
    running trials with a sampler that does not learn from results (random, QMC, grid), one
    per four with one that does (TPE, CMA-ES, GP), up to this; with fewer, none."""
    read_concurrency: int = Field(default=2, ge=1, le=1000)
    """At most this many read requests (GET/HEAD, not the worker protocol) run at once per
    server process; more wait without holding a thread, so reads never starve workers."""
    reevaluate_auto_seconds: float = Field(default=3600.0, ge=0)
    """A sweep with ``reevaluate: auto`` re-runs its top 3 configs with 3 fresh seeds when that
    is estimated (9 × the median duration of its complete trials) to cost at most this much
    worker time; 0 turns the automatic re-evaluation off."""
    server_processes: int = Field(default=1, ge=1, le=64)
    """Server processes for ``lionsweep serve`` (uvicorn workers; each re-reads the env)."""
    db_synchronous_commit: bool = True
    """PostgreSQL only. False sets ``synchronous_commit=off`` on the service's connections:
    commits stop waiting for the WAL flush (several times fewer ms per request on slow
    disks); a PostgreSQL crash can then lose the last fraction of a second of commits but
    never corrupts — a lost finish leaves the trial RUNNING, and the reaper re-queues it."""

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        """Only SQLite and PostgreSQL are supported."""
        if not (url.startswith("sqlite") or url.startswith("postgresql")):
            raise ValueError("database_url must be an sqlite:// or postgresql+psycopg:// URL")
        return url

    @field_validator("heartbeat_grace_seconds")
    @classmethod
    def _grace_outlasts_heartbeats(cls, grace: float, info: ValidationInfo) -> float:
        """A lease must survive a late or lost heartbeat: grace >= 2 × heartbeat interval."""
        interval = info.data.get("heartbeat_interval_seconds")
        if interval is not None and grace < GRACE_TO_INTERVAL * interval:
            raise ValueError(
                f"must be at least {GRACE_TO_INTERVAL:g} × LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS "
                f"({GRACE_TO_INTERVAL * interval:g} s), or the reaper fails live trials"
            )
        return grace

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: str) -> str:
        """Bare host names (or ``*``), no scheme, port or path."""
        for name in filter(None, (h.strip() for h in hosts.split(","))):
            if name != "*" and ("/" in name or " " in name or name.count(":") == 1):
                raise ValueError(f"{name!r}: give bare host names (no scheme, port or path)")
        return hosts

    @property
    def allowed_host_names(self) -> list[str]:
        """``allowed_hosts`` as lower-case names without brackets or a trailing dot."""
        names = (h.strip().lower().strip("[]").rstrip(".") for h in self.allowed_hosts.split(","))
        return [n for n in names if n]

    @property
    def is_sqlite(self) -> bool:
        """True when the database is an SQLite file."""
        return self.database_url.startswith("sqlite")
