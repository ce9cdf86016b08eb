"""Only the outbox writes a delivery's status: a scan of the package's source, so that it
stays true as the code changes. Reading statuses anywhere is fine."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import newsletter
from newsletter.delivery.outbox import STATUSES, DeliveryStatus

PACKAGE = Path(newsletter.__path__[0])
OWNER = PACKAGE / "delivery" / "outbox.py"


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == OWNER or "migrations" in path.parts:
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_status_value(node: ast.AST) -> bool:
    """A delivery status written out: "held", DeliveryStatus.HELD, or a choice of them."""
    if isinstance(node, ast.Constant):
        return node.value in STATUSES
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id == "DeliveryStatus"
    if isinstance(node, ast.IfExp):
        return _is_status_value(node.body) or _is_status_value(node.orelse)
    return False


def _names_delivery(node: ast.AST) -> bool:
    """Delivery, models.Delivery, or anything made of them (Delivery.__table__)."""
    return any(
        (isinstance(n, ast.Name) and n.id == "Delivery")
        or (isinstance(n, ast.Attribute) and n.attr == "Delivery")
        for n in ast.walk(node)
    )


WRITES = ("update", "insert", "delete", "bulk_update_mappings", "bulk_insert_mappings")
RAW_SQL = re.compile(r'\b(update|insert\s+into|delete\s+from)\s+"?delivery"?\s', re.IGNORECASE)


def _writes(tree: ast.AST):
    """(line, what) for each place that writes, or may write, a delivery's status."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                elts = t.elts if isinstance(t, ast.Tuple) else [t]
                values = [node.value] * len(elts)
                if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    values = node.value.elts  # a, b = x, y: each target with its value
                for el, value in zip(elts, values, strict=False):
                    if not (isinstance(el, ast.Attribute) and el.attr == "status"):
                        continue
                    owner = ast.unparse(el.value).lower()
                    if "deliver" in owner or (value is not None and _is_status_value(value)):
                        yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            # update(Delivery) / insert(Delivery) outside the outbox: any write to the table,
            # by its class, its table (Delivery.__table__.update()) or a query of it
            if func.split(".")[-1] in WRITES and (
                any(_names_delivery(a) for a in node.args) or _names_delivery(node.func)
            ):
                yield node.lineno, ast.unparse(node)
            for kw in node.keywords:
                if kw.arg == "status" and (
                    _names_delivery(node.func) or _is_status_value(kw.value)
                ):
                    yield node.lineno, ast.unparse(node)
            name = node.args[1] if func == "setattr" and len(node.args) >= 2 else None
            if isinstance(name, ast.Constant) and name.value == "status":
                yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "status" and _is_status_value(v):
                    yield node.lineno, ast.unparse(node)[:120]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and RAW_SQL.search(node.value + " ")
        ):
            yield node.lineno, node.value[:120]


def test_no_module_but_the_outbox_writes_a_delivery_status():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path, tree in _sources()
        for line, what in _writes(tree)
    ]
    assert not found, (
        "delivery status written outside newsletter/delivery/outbox.py:\n" + "\n".join(found)
    )


def test_the_scan_finds_each_kind_of_write():
    """The scan is only worth something if it would catch the writes it looks for."""
    samples = [
        "delivery.status = 'cancelled'",
        "d.status, d.claimed_by = 'queued', None",
        "row.status = DeliveryStatus.HELD",
        "session.execute(update(Delivery).where(x).values(endpoint_id=None))",
        "stmt = sa.insert(Delivery)",
        "q.values(status='cancelled')",
        "Delivery(idempotency_key='k', status=s)",
        "rows.append({'status': 'queued' if ep.enabled else 'held'})",
        "setattr(d, 'status', s)",
        "conn.execute(text('UPDATE delivery SET status = 1'))",
        # the table by another name, the ORM's bulk paths, a quoted table name
        "conn.execute(Delivery.__table__.update().values(status=s))",
        "session.execute(sa.update(Delivery.__table__).values(status=s))",
        "session.execute(update(models.Delivery).values(status=s))",
        "session.query(Delivery).filter(x).update({'status': s})",
        "session.bulk_update_mappings(Delivery, rows)",
        "conn.execute(text('UPDATE \"delivery\" SET status = :s'))",
    ]
    for code in samples:
        assert list(_writes(ast.parse(code))), code
    # what is not a delivery status write: subscriber statuses, feed results, reading
    for code in [
        "subscriber.status = 'active'",
        "result.status = 'error'",
        "select(Delivery).where(Delivery.status == 'sent')",
        "if d.status == 'queued': pass",
    ]:
        assert not list(_writes(ast.parse(code))), code


def test_every_status_is_in_the_enum():
    assert set(STATUSES) == {s.value for s in DeliveryStatus}
    assert DeliveryStatus.SENT == "sent" and f"{DeliveryStatus.HELD}" == "held"


def _key_spellings(tree: ast.AST):
    """(line, code) of strings spelled like an idempotency key: "subscriber:..|..."."""
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            head = first.value if isinstance(first, ast.Constant) else ""
            if head.startswith(("subscriber:", "endpoint:")) and "|" in ast.unparse(node):
                yield node.lineno, ast.unparse(node)


def test_idempotency_keys_are_spelled_only_by_the_outbox():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path, tree in _sources()
        for line, what in _key_spellings(tree)
    ]
    assert not found, "use outbox.idempotency_key:\n" + "\n".join(found)
    assert list(_key_spellings(ast.parse("k = f'subscriber:{n}|confirm|{hour}'")))
