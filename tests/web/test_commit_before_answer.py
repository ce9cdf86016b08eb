"""A change is stored before the answer goes out: a commit that fails never follows a 2xx."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from newsletter.core.models import AdminToken
from newsletter.web.deps import SessionDep


def test_a_failing_commit_is_not_answered_with_success(engine):
    with Session(engine) as s:
        s.add(AdminToken(name="first", token_hash="a" * 64))
        s.commit()
    app = FastAPI()
    app.state.engine = engine

    @app.post("/change")
    def change(session: SessionDep) -> dict:
        # the same hash again: refused by the unique index only when the session commits
        session.add(AdminToken(name="second", token_hash="a" * 64))
        return {"stored": True}

    answer = TestClient(app, raise_server_exceptions=False).post("/change")
    assert answer.status_code >= 500, answer.text
    assert "stored" not in answer.text
    with Session(engine) as s:
        assert s.exec(select(AdminToken.name)).all() == ["first"]
