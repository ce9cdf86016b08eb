"""Configuration read from the environment and `.env`, built once at the edge."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting can be given as `NEWSLETTER_<NAME>` in the environment or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///./newsletter.db",
        description="SQLAlchemy URL; SQLite by default, postgresql+psycopg://... in production.",
    )
    templates_dir: Path = Field(
        default=PROJECT_ROOT / "templates", description="Jinja2 templates (email, webhooks, web)."
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000", description="Public URL of the web app, used in links."
    )
    secret_key: str = Field(
        default="change-me-in-production",
        description="Signs unsubscribe and preference links; set a long random value.",
    )
    default_timezone: str = Field(default="UTC", description="Time zone for new subscribers.")


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
