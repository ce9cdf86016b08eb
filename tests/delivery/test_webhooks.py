"""Team webhooks end to end: real HTTP receivers on 127.0.0.1 check signatures and shapes."""

import asyncio
import datetime as dt
import json
import shutil

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.endpoints import (
    EndpointIn,
    WebhookError,
    add_endpoint,
    new_generic_secret,
)
from newsletter.core.models import Delivery, DeliveryAttempt, WebhookEndpoint
from newsletter.core.settings import Settings
from newsletter.core.ssrf import UnsafeURLError, check_url
from newsletter.delivery.worker import Worker
from newsletter.pipeline import enable_endpoint, ingest_records, queue_alerts
from tests.support.env import ROOT
from tests.support.planning import plan
from tests.support.workers import drain

GENERIC_SECRET = new_generic_secret()
SECRETS = {"feishu": "feishu-secret", "dingtalk": "SECdingtalk", "generic": GENERIC_SECRET}


def records(*events: tuple[str, str]):
    """Event records as a file gives them: (title, day) each, URLs numbered."""
    return iter(
        [
            (f"record {n}", {"title": title, "url": f"https://e.com/{n}", "occurred_on": day})
            for n, (title, day) in enumerate(events, 1)
        ]
    )


def settings_for(db_url, **kw):
    base = dict(
        database_url=db_url,
        webhook_allow_http=True,
        webhook_allow_networks=["127.0.0.0/8"],
        retry_base_seconds=0.02,
        retry_max_seconds=0.1,
        alert_batch_seconds=0,
        webhook_timeout=2,
    )
    base.update(kw)
    return Settings(**base)


def add(
    session,
    settings,
    receiver,
    platform,
    *,
    mode="monthly",
    language="en",
    topics="governance,capital,hardware,open-source",
    name=None,
    secret=None,
):
    path = f"/{platform}/{name or platform}"
    if platform in SECRETS:
        receiver.platforms.secrets[path] = SECRETS[platform]
    return add_endpoint(
        session=session,
        settings=settings,
        ep_in=EndpointIn(
            name=name or platform,
            platform=platform,
            url=receiver.url(path),
            secret=secret or SECRETS.get(platform),
            topics=topics,
            mode=mode,
            language=language,
        ),
    )


def test_monthly_digest_reaches_every_platform_as_native_cards(sample, db_url, chat_receiver):
    settings = settings_for(db_url)
    with Session(sample) as s:
        for platform in ("slack", "discord", "teams", "feishu", "dingtalk", "wecom", "generic"):
            add(
                s,
                settings,
                chat_receiver,
                platform,
                language="zh" if platform in ("feishu", "dingtalk", "wecom") else "en",
            )
        s.commit()
    summary = plan(sample, settings)
    assert summary.endpoints == 7
    stats = drain(sample, settings)
    assert set(stats.by_status) - {"deferred"} == {"sent"}, _debug_errors(sample)
    seen = {r.platform for r in chat_receiver.platforms.requests}
    assert seen == {"slack", "discord", "teams", "feishu", "dingtalk", "wecom", "generic"}
    everything = " ".join(r.body.decode() for r in chat_receiver.platforms.requests)
    assert "Nvidia" in everything and "英伟达" in everything
    # the sharp take is in the first part of each monthly digest
    slack_first = chat_receiver.platforms.for_path("/slack/slack")[0].json
    assert any("Sharp take" in json.dumps(b) for b in slack_first["blocks"])
    # Discord needed several messages to stay within embed limits, none over
    assert len(chat_receiver.platforms.for_path("/discord/discord")) >= 2
    generic = chat_receiver.platforms.for_path("/generic/generic")[0]
    assert generic.json["type"] == "digest.published" and generic.headers["webhook-id"].startswith(
        "msg_"
    )
    assert plan(sample, settings).endpoint_rows == 0  # enqueueing again adds nothing


def test_instant_alerts_are_batched_and_not_repeated(sample, db_url, chat_receiver):
    settings = settings_for(db_url)
    with Session(sample) as s:
        add(s, settings, chat_receiver, "slack", mode="instant", topics="hardware")
        add(s, settings, chat_receiver, "wecom", mode="instant", topics="capital", language="zh")
        ingested = ingest_records(
            session=s,
            settings=settings,
            records=records(
                ("Chipmaker ships new GPU", "2025-08-01"),
                ("Another accelerator launch", "2025-08-01"),
                ("Start-up raises funding for chips", "2025-08-02"),
                ("A poem about spring", "2025-08-02"),
            ),
        )
        assert ingested.alerts == 4  # 3 slack + 1 wecom
        assert queue_alerts(session=s, settings=settings, ids=ingested.report.new_ids) == 0
        s.commit()
    drain(sample, settings)
    (slack,) = chat_receiver.platforms.for_path("/slack/slack")
    sections = [b for b in slack.json["blocks"] if b["type"] == "section"]
    assert len(sections) == 3 and "3 new events" in slack.json["blocks"][0]["text"]["text"]
    (wecom,) = chat_receiver.platforms.for_path("/wecom/wecom")
    assert "raises funding" in wecom.json["markdown"]["content"]


def test_every_platform_is_one_registry_entry_and_its_templates(cli):
    """The API enum, the CLI help, validation and pacing all come from the registry."""
    from newsletter.core import platforms
    from newsletter.delivery.chat import EndpointPacer
    from newsletter.web.api.models import WebhookCreate

    templates = ROOT / "templates" / "webhooks"
    for name, entry in platforms.PLATFORMS.items():
        for kind in ("alert", "digest"):
            assert (templates / f"{name}.{kind}.json.j2").is_file(), (name, kind)
        assert EndpointIn(name="x", platform=name, url="https://x.example/h").platform == name
        assert (name in EndpointPacer().rates) == (entry.rate is not None)
    enum = WebhookCreate.model_json_schema()["properties"]["platform"]["enum"]
    assert enum == list(platforms.NAMES)
    assert platforms.names_text() in " ".join(cli("webhooks", "add", "--help").output.split())
    with pytest.raises(ValueError, match="platform must be one of slack, discord"):
        EndpointIn(name="x", platform="irc", url="https://x.example/h")


def test_a_shared_card_is_signed_per_endpoint_and_a_bad_row_fails_alone(
    sample, db_url, chat_receiver
):
    """Endpoints of one platform and language get the same card, each signed with its own
    secret (the receiver checks every signature); an alert row that names no event fails
    alone, with the reason, and the worker carries on."""
    settings = settings_for(db_url)
    secrets = {"g1": new_generic_secret(), "g2": new_generic_secret(), "f1": "s1", "f2": "s2"}
    with Session(sample) as s:
        for name, secret in secrets.items():
            platform = "generic" if name.startswith("g") else "feishu"
            ep = add(s, settings, chat_receiver, platform, mode="instant", name=name, secret=secret)
            chat_receiver.platforms.secrets[f"/{platform}/{name}"] = secret
        ingested = ingest_records(
            session=s,
            settings=settings,
            records=records(("Chipmaker ships new GPU", "2025-08-01")),
        )
        assert ingested.alerts == 4
        bad = Delivery(
            idempotency_key="bad-row",
            channel="generic",
            kind="alert",
            period="event:not-a-number",
            endpoint_id=ep.id,
        )
        s.add(bad)
        s.commit()
        bad_id = bad.id
    stats = drain(sample, settings)
    assert stats.by_status == {"sent": 4, "failed": 1}, _debug_errors(sample)
    requests = {r.path.rsplit("/", 1)[1]: r for r in chat_receiver.platforms.requests}
    assert sorted(requests) == ["f1", "f2", "g1", "g2"]
    assert requests["g1"].body == requests["g2"].body  # one card, encoded once
    assert (
        requests["g1"].headers["webhook-signature"] != requests["g2"].headers["webhook-signature"]
    )
    f1, f2 = requests["f1"].json, requests["f2"].json
    assert f1.pop("sign") != f2.pop("sign") and f1.pop("timestamp") and f2.pop("timestamp")
    assert f1 == f2
    with Session(sample) as s:
        row = s.get(Delivery, bad_id)
        assert row.status == "failed" and "no event in its period" in row.last_error


def test_wrong_signature_is_refused_by_the_platform_and_not_retried(sample, db_url, chat_receiver):
    settings = settings_for(db_url)
    with Session(sample) as s:
        add(s, settings, chat_receiver, "feishu", secret="not-the-secret")
        add(s, settings, chat_receiver, "dingtalk", secret="SECwrong")
        s.commit()
    plan(sample, settings)
    stats = drain(sample, settings)
    assert stats.by_status == {"failed": 2}
    with Session(sample) as s:
        errors = s.execute(select(DeliveryAttempt.error)).scalars().all()
    assert any("19021" in e for e in errors) and any("310000" in e for e in errors)
    assert len(chat_receiver.platforms.requests) == 2


def test_429_with_retry_after_and_500_then_success(sample, db_url, chat_receiver):
    settings = settings_for(db_url)
    chat_receiver.platforms.script["/slack/slack"] = [(429, {"Retry-After": "1"}, "rate_limited")]
    chat_receiver.platforms.script["/discord/discord"] = [(500, {}, "oops")]
    with Session(sample) as s:
        add(s, settings, chat_receiver, "slack", topics="open-source")
        add(s, settings, chat_receiver, "discord", topics="open-source")
        s.commit()
    plan(sample, settings)
    stats = drain(sample, settings)
    assert stats.by_status.get("sent") == 2 and "failed" not in stats.by_status
    slack = chat_receiver.platforms.for_path("/slack/slack")
    assert len(slack) == 2
    with Session(sample) as s:
        attempts = s.execute(select(DeliveryAttempt).order_by(DeliveryAttempt.id)).scalars().all()
    first = next(a for a in attempts if a.status_code == 429)
    retry = next(a for a in attempts if a.delivery_id == first.delivery_id and a.outcome == "sent")
    assert (retry.started_at - first.finished_at).total_seconds() >= 0.9  # Retry-After honoured


def test_a_malformed_retry_after_is_a_temporary_failure(sample, db_url, chat_receiver):
    """A busy receiver's Retry-After that is neither seconds nor a date is ignored: the
    rows are tried again later, not failed for good as if the send had crashed."""
    settings = settings_for(db_url)
    chat_receiver.platforms.script["/slack/slack"] = [
        (503, {"Retry-After": "soon"}, "busy"),
        (429, {"Retry-After": "Wed, 99 Oct 2015 07:28:00 GMT"}, "rate_limited"),
    ]
    with Session(sample) as s:
        add(s, settings, chat_receiver, "slack", topics="open-source")
        s.commit()
    plan(sample, settings)
    stats = drain(sample, settings)
    assert stats.by_status.get("sent") == 1 and "failed" not in stats.by_status
    assert len(chat_receiver.platforms.for_path("/slack/slack")) == 3
    with Session(sample) as s:
        outcomes = s.execute(select(DeliveryAttempt.outcome).order_by(DeliveryAttempt.id)).all()
    assert [o for (o,) in outcomes] == ["temporary", "temporary", "sent"]


def test_error_inside_a_200_and_timeouts(sample, db_url, chat_receiver):
    settings = settings_for(db_url, webhook_timeout=0.5)
    chat_receiver.platforms.script["/wecom/wecom"] = [
        (200, {}, json.dumps({"errcode": 45009, "errmsg": "api freq out of limit"}))
    ]
    chat_receiver.platforms.script["/teams/teams"] = ["sleep:1.5"]
    with Session(sample) as s:
        add(s, settings, chat_receiver, "wecom", topics="open-source")
        add(s, settings, chat_receiver, "teams", topics="open-source")
        s.commit()
    plan(sample, settings)

    async def one_batch():
        w = Worker(engine=sample, settings=settings)
        await w.run_batch()
        await w.aclose()

    asyncio.run(one_batch())
    with Session(sample) as s:
        rows = {d.channel: d for d in s.execute(select(Delivery)).scalars()}
    assert rows["wecom"].status == "queued" and "45009" in rows["wecom"].last_error
    wait = (rows["wecom"].next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 50 < wait <= 60  # the robot wants the next minute
    assert rows["teams"].status == "queued" and "timed out" in rows["teams"].last_error


def test_failing_endpoint_is_disabled_then_held_messages_go_when_enabled(
    sample, db_url, chat_receiver, cli
):
    settings = settings_for(
        db_url, webhook_disable_after_failures=3, webhook_disable_after_hours=0, max_attempts=10
    )
    chat_receiver.platforms.script["/slack/slack"] = [(503, {}, "down")] * 3
    with Session(sample) as s:
        add(s, settings, chat_receiver, "slack", topics="open-source")
        s.commit()
    plan(sample, settings)
    drain(sample, settings)
    with Session(sample) as s:
        ep = s.execute(select(WebhookEndpoint)).scalar_one()
        statuses = {d.status for d in s.execute(select(Delivery)).scalars()}
    assert not ep.enabled and "3 consecutive failures" in ep.disabled_reason
    assert statuses == {"held"}
    listed = json.loads(cli("webhooks", "list", "--format", "json").output)
    assert listed[0]["enabled"] is False and "503" in listed[0]["disabled_reason"]
    with Session(sample) as s:
        assert (
            enable_endpoint(session=s, endpoint=s.execute(select(WebhookEndpoint)).scalar_one())
            >= 1
        )
        s.commit()
    drain(sample, settings)
    with Session(sample) as s:
        assert {d.status for d in s.execute(select(Delivery)).scalars()} == {"sent"}


def test_gone_webhook_is_disabled_at_once(sample, db_url, chat_receiver):
    settings = settings_for(db_url)
    chat_receiver.platforms.script["/wecom/wecom"] = [
        (200, {}, json.dumps({"errcode": 93000, "errmsg": "invalid webhook url"}))
    ]
    with Session(sample) as s:
        add(s, settings, chat_receiver, "wecom", topics="open-source")
        s.commit()
    plan(sample, settings)
    drain(sample, settings)
    with Session(sample) as s:
        ep = s.execute(select(WebhookEndpoint)).scalar_one()
    assert not ep.enabled and "93000" in ep.disabled_reason


def test_ssrf_guard(sample, db_url, chat_receiver):
    strict = Settings(database_url=db_url)
    for url, message in [
        ("http://hooks.example.com/x", "must use https"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://localhost:8443/x", "loopback"),  # a name that resolves to 127.0.0.1
        ("https://10.1.2.3/x", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://[::ffff:192.168.0.1]/x", "private"),
        ("ftp://example.com/x", "https"),
        ("https://user:pw@hooks.slack.com/x", "user name"),
    ]:
        with pytest.raises(UnsafeURLError, match=message):
            check_url(url, allow_http=False)
        with Session(sample) as s, pytest.raises(WebhookError, match="refusing"):
            add_endpoint(
                session=s,
                settings=strict,
                ep_in=EndpointIn(name="x", platform="slack", url=url, topics="capital"),
            )
    fake_dns = lambda host, port, type=0: [(2, 1, 6, "", ("93.184.216.34", port))]  # noqa: E731
    assert check_url("https://hooks.example.com/x", resolve=fake_dns).address == "93.184.216.34"

    def rebinding(host, port, type=0):
        return [
            (2, 1, 6, "", ("93.184.216.34", port)),
            (2, 1, 6, "", ("127.0.0.1", port)),
        ]  # noqa: E731

    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url("https://rebind.example.com/x", resolve=rebinding)
    # stored while allowed, refused at send time once the allow-list is gone
    with Session(sample) as s:
        add(s, settings_for(db_url), chat_receiver, "slack", topics="open-source")
        s.commit()
    no_allow = settings_for(db_url, webhook_allow_networks=[])
    plan(sample, no_allow)
    stats = drain(sample, no_allow)
    assert stats.by_status == {"failed": 1}
    assert chat_receiver.platforms.requests == []


def test_cli_add_list_test_and_template_errors(
    sample, db_url, chat_receiver, cli, monkeypatch, tmp_path
):
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    chat_receiver.platforms.secrets["/generic/ops"] = None
    r = cli(
        "webhooks",
        "add",
        "ops",
        "--platform",
        "generic",
        "--url",
        chat_receiver.url("/generic/ops"),
        "--topics",
        "hardware",
    )
    assert r.exit_code == 0, r.output
    secret = r.output.split("shown once; give it to the receiver): ")[1].split()[0]
    chat_receiver.platforms.secrets["/generic/ops"] = secret
    listed = cli("webhooks", "list").output
    assert secret not in listed and "••••" + secret[-4:] in listed and secret[:4] not in listed
    r = cli(
        "webhooks",
        "add",
        "ding",
        "--platform",
        "dingtalk",
        "--url",
        chat_receiver.url("/dingtalk/ding"),
        "--secret",
        "SECabcdefgh123",
        "--topics",
        "hardware",
        "--language",
        "zh",
    )
    chat_receiver.platforms.secrets["/dingtalk/ding"] = "SECabcdefgh123"
    out = cli("webhooks", "test", "ding")
    assert out.exit_code == 0 and '"errcode": 0' in out.output
    assert cli("webhooks", "test", "ops").exit_code == 0
    bad = cli(
        "webhooks",
        "add",
        "evil",
        "--platform",
        "slack",
        "--url",
        "http://169.254.169.254/",
        "--topics",
        "capital",
    )
    assert bad.exit_code == 1 and "metadata" in bad.stderr
    # a template that renders invalid JSON is an error at test time; nothing is sent
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "webhooks" / "dingtalk.alert.json.j2").write_text(
        '{"msgtype": "markdown", {{ title }} }', encoding="utf-8"
    )
    monkeypatch.setenv("NEWSLETTER_TEMPLATES_DIR", str(templates))
    before = len(chat_receiver.platforms.requests)
    broken = cli("webhooks", "test", "ding")
    assert broken.exit_code == 1 and "invalid JSON" in broken.stderr
    assert len(chat_receiver.platforms.requests) == before


def _debug_errors(engine):
    with Session(engine) as s:
        return [
            (d.channel, d.status, d.last_error)
            for d in s.execute(select(Delivery)).scalars()
            if d.status != "sent"
        ]


def test_teams_in_rosters_take_secrets_from_the_environment(
    sample, db_url, chat_receiver, cli, monkeypatch, tmp_path
):
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    monkeypatch.setenv("OPS_FEISHU_URL", chat_receiver.url("/feishu/ops"))
    monkeypatch.setenv("OPS_FEISHU_SECRET", "feishu-secret")
    chat_receiver.platforms.secrets["/feishu/ops"] = "feishu-secret"
    roster = tmp_path / "teams.yaml"
    roster.write_text(
        "teams:\n"
        "  - {name: ops, platform: feishu, url_env: OPS_FEISHU_URL, secret_env: OPS_FEISHU_SECRET,"
        " topics: [hardware], mode: instant, language: zh}\n"
        "  - {name: leaky, platform: dingtalk, url: https://oapi.dingtalk.com/robot/send, secret: SEC123, topics: [capital]}\n"
        "  - {name: unset, platform: slack, url_env: NOT_SET_ANYWHERE, topics: [capital]}\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "sync", str(roster))
    assert r.exit_code == 1
    assert "1 created" in r.output and "2 invalid" in r.output
    assert "never the secret itself" in r.stderr and "NOT_SET_ANYWHERE" in r.stderr
    assert "feishu-secret" not in cli("webhooks", "list").output
    assert (
        cli("webhooks", "test", "ops").exit_code == 0
    )  # signed with the secret from the environment
    assert "0 created" in cli("subscribers", "sync", str(roster)).output


def test_cli_edit_changes_only_what_is_given(sample, db_url, chat_receiver, cli, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    assert (
        cli(
            "webhooks",
            "add",
            "ops",
            "--platform",
            "slack",
            "--url",
            chat_receiver.url("/slack/ops"),
            "--topics",
            "hardware",
        ).exit_code
        == 0
    )
    assert (
        cli(
            "webhooks", "edit", "ops", "--topics", "capital,governance", "--mode", "weekly"
        ).exit_code
        == 0
    )
    (row,) = json.loads(cli("webhooks", "list", "--format", "json").output)
    assert (row["topics"], row["mode"], row["language"]) == (
        ["governance", "capital"],
        "weekly",
        "en",
    )
    bad = cli("webhooks", "edit", "ops", "--url", "https://169.254.169.254/latest")
    assert bad.exit_code == 1 and "metadata" in bad.stderr
    assert cli("webhooks", "edit", "ops", "--mode", "hourly").exit_code == 1
    assert cli("webhooks", "edit", "nope", "--mode", "daily").exit_code == 1
    (row,) = json.loads(cli("webhooks", "list", "--format", "json").output)
    assert row["mode"] == "weekly" and row["url"].startswith("http://127.0.0.1")
