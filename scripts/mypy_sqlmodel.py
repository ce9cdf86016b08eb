"""A mypy plugin that types SQLModel table columns the way SQLAlchemy uses them.

SQLModel declares `id: int | None = Field(...)`, so mypy sees `Event.id` as `int | None`
and every query (`Event.id.in_(ids)`, `.where(Event.url == url)`, `.order_by(Event.id)`)
as a type error. At run time, on a `table=True` class, the attribute is an
`InstrumentedAttribute`: this plugin says so for class access (instances keep the
declared type) and gives such classes their `__table__`. Used by `[tool.mypy]` in
pyproject.toml; it only changes what mypy believes, nothing at run time.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import (
    MDEF,
    NameExpr,
    SymbolTableNode,
    TypeInfo,
    Var,
)
from mypy.plugin import AttributeContext, ClassDefContext, Plugin
from mypy.types import Instance, Type

SQLMODEL = "sqlmodel.main.SQLModel"
INSTRUMENTED = "sqlalchemy.orm.attributes.InstrumentedAttribute"
TABLE = "sqlalchemy.sql.schema.Table"


METADATA_KEY = "sqlmodel-table"


def _is_table_model(info: TypeInfo) -> bool:
    """A subclass of SQLModel declared (itself or a base) with `table=True`: marked in the
    class's metadata while its definition is analysed, as the cache keeps no keywords."""
    return info.has_base(SQLMODEL) and any(METADATA_KEY in base.metadata for base in info.mro)


class SQLModelPlugin(Plugin):
    def get_additional_deps(self, file):  # type: ignore[no-untyped-def]
        return [(10, "sqlalchemy.orm.attributes", -1), (10, "sqlalchemy.sql.schema", -1)]

    def get_class_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        owner, _, name = fullname.rpartition(".")
        if not owner or name.startswith("_") or name.startswith("model_"):
            return None
        sym = self.lookup_fully_qualified(owner)
        if sym is None or not isinstance(sym.node, TypeInfo) or not _is_table_model(sym.node):
            return None
        node = sym.node.names.get(name)
        if node is None or not isinstance(node.node, Var) or node.node.is_classvar:
            return None
        return self._column_type

    def _column_type(self, ctx: AttributeContext) -> Type:
        sym = self.lookup_fully_qualified(INSTRUMENTED)
        if sym is None or not isinstance(sym.node, TypeInfo):
            return ctx.default_attr_type
        return Instance(sym.node, [ctx.default_attr_type])

    def get_customize_class_mro_hook(
        self, fullname: str
    ) -> Callable[[ClassDefContext], None] | None:
        return _add_table


def _add_table(ctx: ClassDefContext) -> None:
    info = ctx.cls.info
    table = ctx.cls.keywords.get("table")
    if isinstance(table, NameExpr) and table.fullname == "builtins.True":
        info.metadata[METADATA_KEY] = {}
    if "__table__" in info.names or not _is_table_model(info):
        return
    sym = ctx.api.lookup_fully_qualified_or_none(TABLE)
    if sym is None or not isinstance(sym.node, TypeInfo):
        return
    var = Var("__table__", Instance(sym.node, []))
    var.info = info
    var._fullname = f"{info.fullname}.__table__"
    var.is_classvar = True
    info.names["__table__"] = SymbolTableNode(MDEF, var, plugin_generated=True)


def plugin(version: str) -> type[Plugin]:
    return SQLModelPlugin
