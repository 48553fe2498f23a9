"""Web settings (environment prefix ``SPINEDECOMP_WEB_``).

The secret key signs session cookies. Outside demo mode the built-in default is refused, so a
clinic server never runs with a secret that is printed in this source file.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spinedecomp.core.errors import SpinedecompError

DEMO_SECRET = "spinedecomp-demo-secret-not-for-clinical-use"


class InsecureSettings(SpinedecompError):
    """A default secret outside demo mode."""


class WebSettings(BaseSettings):
    """How the web server runs."""

    model_config = SettingsConfigDict(env_prefix="SPINEDECOMP_WEB_", extra="ignore")

    demo: bool = Field(default=False, description="Demo mode: allows the default secret and "
                       "creates demo users with printed passwords.")
    secret_key: str = Field(default=DEMO_SECRET, min_length=16,
                            description="Signs session cookies; set a long random value.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    database_url: str | None = Field(default=None, description="Overrides "
                                     "SPINEDECOMP_DATABASE_URL for the web server.")
    cookie_secure: bool = Field(default=False, description="Send cookies over HTTPS only (set it "
                                "behind TLS).")
    session_max_age_s: int = Field(default=12 * 3600, ge=60)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: float = Field(default=300.0, gt=0)
    control_rate_hz: float = Field(default=1000.0, ge=100.0, le=5000.0)
    frame_hz: float = Field(default=50.0, ge=20.0, le=200.0,
                            description="Live frames per second sent to viewers.")
    live_store: bool = Field(default=True, description="Record live sessions in the store.")

    @model_validator(mode="after")
    def _no_default_secret(self) -> WebSettings:
        if not self.demo and self.secret_key == DEMO_SECRET:
            raise InsecureSettings("the default secret key is only allowed in demo mode: set "
                                   "SPINEDECOMP_WEB_SECRET_KEY to a long random value")
        return self
