"""The production stack's files, checked without Docker: compose structure, images,
and that every setting the stack passes is one the app actually reads."""

import yaml

from newsletter.core.settings import Settings
from tests.support.env import ROOT


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_has_the_production_services():
    services = compose()["services"]
    assert set(services) == {"app", "worker", "postgres", "mailpit"}
    assert (
        services["postgres"]["image"].startswith("postgres:")
        and "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    )
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    assert services["worker"]["deploy"]["replicas"] >= 2 and services["worker"]["command"] == [
        "worker"
    ]
    assert "--no-worker" in services["app"]["command"]
    for name in ("app", "postgres"):
        assert services[name]["healthcheck"]["test"]
    assert services["app"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for svc in services.values():  # published ports stay on the host's loopback
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:")


def test_every_environment_name_is_a_setting_the_app_reads():
    fields = {f"NEWSLETTER_{name.upper()}" for name in Settings.model_fields}
    for name in ("app", "worker"):
        env = compose()["services"][name]["environment"]
        assert (
            "NEWSLETTER_DATABASE_URL" in env and env["NEWSLETTER_SMTP_URL"] == "smtp://mailpit:1025"
        )
        unknown = {k for k in env if k.startswith("NEWSLETTER_")} - fields
        assert not unknown, unknown
        settings = Settings(
            **{
                k.removeprefix("NEWSLETTER_").lower(): v
                for k, v in env.items()
                if "${" not in str(v)
            }
        )
        assert settings.database_url.startswith("postgresql+psycopg://")


def test_dockerfile_is_small_non_root_and_migrates_on_start():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "python:3.11-slim" in text and "USER newsletter" in text and "HEALTHCHECK" in text
    entry = (ROOT / "docker" / "entrypoint.sh").read_text(encoding="utf-8")
    assert "newsletter db upgrade" in entry and 'exec newsletter "$@"' in entry
