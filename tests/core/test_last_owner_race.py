"""Two owners stepping down (or revoking each other) at the same moment must not leave
no owner at all: each checks that another live owner remains, and on PostgreSQL both
checks could pass before either change was committed."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from newsletter.core.admin_tokens import TokenAdminError, create_token, set_role
from newsletter.core.db import make_engine
from newsletter.core.models import AdminToken


def waiting_on_a_lock(engine, pid: int) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p"),
                {"p": pid},
            ).scalar()
        )


@pytest.mark.postgres
def test_two_owners_stepping_down_at_once_leave_one_owner(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (SQLite has one writer at a time)")
    engine = make_engine(db_url)
    with Session(engine) as s:
        create_token(session=s, name="ann", role="owner")
        create_token(session=s, name="bob", role="owner")
        s.commit()
    outcome: list[object] = []
    started = threading.Event()
    pid: list[int] = []

    def bob_steps_down():
        with Session(engine) as s:
            pid.append(s.execute(text("SELECT pg_backend_pid()")).scalar_one())
            started.set()
            try:
                set_role(session=s, name="bob", role="editor")
                s.commit()
                outcome.append("done")
            except TokenAdminError as exc:
                s.rollback()
                outcome.append(exc)

    with Session(engine) as first:
        set_role(session=first, name="ann", role="editor")  # not committed yet
        thread = threading.Thread(target=bob_steps_down)
        thread.start()
        started.wait()
        # bob's check either waits for ann's change (it must) or has already finished
        while thread.is_alive() and not waiting_on_a_lock(engine, pid[0]):
            thread.join(0.01)
        first.commit()
    thread.join()
    with Session(engine) as s:
        owners = s.exec(select(AdminToken.name).where(AdminToken.role == "owner")).all()
    engine.dispose()
    assert owners == ["bob"], outcome
    assert isinstance(outcome[0], TokenAdminError) and "last owner" in str(outcome[0])
