"""Store settings: where the database lives and how telemetry is recorded.

Read from the environment (prefix ``SPINEDECOMP_``), e.g. ``SPINEDECOMP_DATABASE_URL`` and
``SPINEDECOMP_DATA_DIR``. With neither set, the store is a SQLite file in the platform data
directory (``$XDG_DATA_HOME/spinedecomp`` or ``~/.local/share/spinedecomp``), so a fresh
machine needs no set-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/spinedecomp``, else ``~/.local/share/spinedecomp``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "spinedecomp"


class StoreSettings(BaseSettings):
    """Database location and telemetry recording parameters."""

    model_config = SettingsConfigDict(env_prefix="SPINEDECOMP_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; sqlite:///... or postgresql://user@host/db. "
        "Default: a SQLite file in data_dir.")
    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Holds the default SQLite file and the telemetry spool.")
    auto_migrate: bool | None = Field(
        default=None, description="Upgrade the schema on open. Default: yes for SQLite (embedded, "
        "no set-up), no for PostgreSQL (run `spinedecomp db upgrade` once per release).")
    pool_size: int = Field(default=5, ge=1, le=200,
                           description="PostgreSQL connections kept open (as many again may "
                           "overflow); a process recording many tables wants more.")
    clinical_rate_hz: float = Field(default=100.0, gt=0.0, le=5000.0,
                                    description="Rate of the stored clinical telemetry record.")
    blackbox_pre_s: float = Field(default=5.0, ge=0.0, le=60.0,
                                  description="Full-rate seconds kept before an alarm or edit.")
    blackbox_post_s: float = Field(default=5.0, ge=0.0, le=600.0,
                                   description="Full-rate seconds kept after an alarm or edit.")
    flush_interval_s: float = Field(default=0.1, gt=0.0, le=1.0,
                                    description="The writer commits at least this often.")
    chunk_s: float = Field(default=60.0, gt=0.0, le=3600.0,
                           description="Length of a compacted telemetry chunk.")
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024,
                                 description="Local spool capacity while the database is down.")
    retry_s: float = Field(default=1.0, gt=0.0, le=60.0,
                           description="How often the writer retries an unavailable database.")
    close_retry_s: float = Field(default=5.0, ge=0.0, le=600.0,
                                 description="At the end of a session, how long the writer keeps "
                                 "retrying an unavailable database before leaving the spool for "
                                 "the next start.")
    stale_after_s: float = Field(default=120.0, gt=0.0,
                                 description="A session from another host whose heartbeat is this "
                                 "old is taken as crashed.")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        return Path(value).expanduser() if isinstance(value, str | Path) else value

    @model_validator(mode="after")
    def _check(self) -> StoreSettings:
        if self.database_url is not None and not self.database_url.strip():
            self.database_url = None
        return self

    @property
    def url(self) -> str:
        """The database URL in effect."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'spinedecomp.sqlite'}"

    @property
    def spool_dir(self) -> Path:
        """Where the writer spools telemetry while the database is unavailable."""
        return self.data_dir / "spool"
