"""The API docs work offline: Swagger UI and ReDoc load only from the app itself, and
render the operations, in Chromium with every other host blocked."""

from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from newsletter.web.app import create_app


def offline_page(browser):
    """A page that can reach 127.0.0.1 only; what it tried to reach elsewhere is kept."""
    context = browser.new_context()
    elsewhere: list[str] = []

    def only_local(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    return context, context.new_page(), elsewhere


def test_swagger_ui_renders_the_operations_offline(live_server, browser):
    context, page, elsewhere = offline_page(browser)
    page.goto(live_server.url + "/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
    assert page.locator(".opblock").count() > 20
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/topics").first).to_be_visible()
    assert elsewhere == []
    context.close()


def test_redoc_renders_offline(live_server, browser):
    context, page, elsewhere = offline_page(browser)
    page.goto(live_server.url + "/redoc")
    expect(page.locator("h1", has_text="AI Industry Brief")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("/api/v1/topics").first).to_be_attached()
    # ReDoc's own "powered by" badge is the one picture it asks its site for; offline it
    # is simply not shown
    assert [url for url in elsewhere if not url.endswith("/logo-mini.svg")] == []
    context.close()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_name_no_other_host(engine, web_settings, path):
    client = TestClient(create_app(settings=web_settings, engine=engine))
    page = client.get(path)
    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 100_000, asset
