"""The package reads as the pipeline: each stage imports only from the stages below it.

A scan of every `import` in the package (function-level ones too, which is where cycles
hide), so that the folder tree stays the architecture as the code changes. The order is
the one `docs/architecture.md` draws.
"""

from __future__ import annotations

import ast
from pathlib import Path

import newsletter

PACKAGE = Path(newsletter.__path__[0])

# bottom to top; a stage may import its own modules and any stage before it
STAGES = (
    "core",
    "topics",
    "ingest",
    "audience",
    "rendering",
    "delivery",
    "feedback",
    "planning",
    "pipeline",
    "web",
    "service",
    "cli",
    "__main__",
)
# the one module that assembles the running service (web app, worker, scheduler)
WEB_ASSEMBLER = "newsletter.service.runner"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that this module imports (anywhere in its body)."""
    found: set[str] = set()
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def package_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py") if "versions" not in p.parts}
    known = set(files)
    return {
        name: imports_of(ast.parse(p.read_text()), name, p.name == "__init__.py", known)
        for name, p in files.items()
    }


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_problems(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        mine = stage(module)
        if mine not in STAGES:
            problems.append(f"{module}: not in a stage (add the folder to STAGES)")
            continue
        for target in sorted(targets):
            theirs = stage(target)
            if theirs not in STAGES:
                continue  # the package itself (newsletter/__init__) or a stray module
            if STAGES.index(theirs) > STAGES.index(mine):
                problems.append(f"{module} imports {target}: a stage above it")
            if theirs == "web" and mine != "web" and module != WEB_ASSEMBLER:
                problems.append(f"{module} imports {target}: only web/ and the service use web/")
            if theirs == "cli" and mine not in ("cli", "__main__"):
                problems.append(f"{module} imports {target}: nothing outside cli/ uses cli/")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules (each reported once, from its smallest member)."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                key = tuple(sorted(path))
                if key not in seen:
                    seen.add(key)
                    found.append([*path, start])
            elif nxt not in path and nxt > start:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_each_stage_imports_only_stages_below_it():
    problems = layer_problems(package_graph())
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    found = cycles(package_graph())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_checks_catch_a_violation(tmp_path):
    """The scan finds an upward import, a use of web/ or cli/, and a hidden cycle."""
    root = tmp_path / "newsletter"
    for folder in ("core", "planning", "web", "cli", "delivery"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "core" / "labels.py").write_text("from ..web import pages\n")
    (root / "web" / "pages.py").write_text("X = 1\n")
    (root / "delivery" / "worker.py").write_text("from newsletter.cli import main\n")
    (root / "cli" / "main.py").write_text("")
    (root / "planning" / "alerts.py").write_text("from . import digests\n")
    (root / "planning" / "digests.py").write_text(
        "def later():\n    from newsletter.planning.alerts import X\n"
    )
    graph = package_graph(root)
    problems = layer_problems(graph)
    assert "newsletter.core.labels imports newsletter.web.pages: a stage above it" in problems
    assert any("only web/ and the service use web/" in p for p in problems)
    assert any("nothing outside cli/ uses cli/" in p for p in problems)
    assert cycles(graph) == [
        ["newsletter.planning.alerts", "newsletter.planning.digests", "newsletter.planning.alerts"]
    ]
