"""The shape of the code the README's layout map promises, checked from the source itself.

- no import cycle between the packages of ``shoal`` (imports under
  ``if TYPE_CHECKING:`` are annotations only and do not count);
- SQL lives in ``shoal.frontier``: no other module imports SQLAlchemy, but
  ``parse/output.py``, which writes the user's tables for ``--to sql``;
- every module opens with a docstring;
- the README's layout map names every module, and every module it names exists.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "shoal"
SQL_OUTSIDE_FRONTIER = {"parse/output.py"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        yield rel, ast.parse(path.read_text(encoding="utf-8"), rel)


def _package(rel: str) -> str:
    """``frontier/sql.py`` → ``frontier``; a top-level module is a package of its own."""
    return rel.split("/", 1)[0].removesuffix(".py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, rel: str) -> Iterator[str]:
    """Absolute names of the modules ``tree`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    here = rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__").split(".")
    if not rel.endswith("__init__.py"):
        here = here[:-1]

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    yield "shoal." + ".".join([*base, *([node.module] if node.module else [])])
                elif node.module:
                    yield node.module
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from walk([c for c in children if isinstance(c, ast.stmt)])
                    for c in children:
                        if isinstance(c, ast.ExceptHandler):
                            yield from walk(c.body)

    yield from walk(tree.body)


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for rel, tree in _modules():
        src = _package(rel)
        for name in _imports(tree, rel):
            parts = name.split(".")
            if parts[0] == "shoal" and len(parts) > 1 and parts[1] != src:
                graph.setdefault(src, set()).add(parts[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_packages() -> None:
    graph = _package_graph()
    assert "frontier" in graph and "worker" in graph  # the graph was really built
    assert _cycle(graph) is None, (
        f"import cycle between packages: {' -> '.join(_cycle(graph) or [])}"
    )


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_sql_only_in_the_frontier() -> None:
    outside = sorted(
        rel
        for rel, tree in _modules()
        if not rel.startswith("frontier/")
        and rel not in SQL_OUTSIDE_FRONTIER
        and any(name.split(".")[0] == "sqlalchemy" for name in _imports(tree, rel))
    )
    assert outside == [], f"SQLAlchemy imported outside shoal.frontier: {outside}"


def test_every_module_opens_with_a_docstring() -> None:
    bare = sorted(
        rel
        for rel, tree in _modules()
        if not ast.get_docstring(tree)
        and "/migrations/" not in rel
        and not rel.endswith("__main__.py")
    )
    assert bare == [], f"modules without a docstring: {bare}"


def test_the_readme_layout_names_real_modules() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    named: set[str] = set()
    package = ""
    for line in block.strip("\n").splitlines()[
        1:
    ]:  # the src/shoal/ tree, up to the next top-level folder
        if line and not line.startswith(" "):
            break
        head = re.match(r"^  (\w+)/\s", line)
        if head:
            package = head.group(1)
        elif re.match(r"^  \w+\.py\s", line):
            package = ""
        for module in re.findall(r"\b([a-z0-9_]+\.py)\b", line):
            found = any((SRC / package).rglob(module)) if package else (SRC / module).is_file()
            assert found or (SRC / module).is_file(), (
                f"README layout names {module} (in {package or 'shoal'}/)"
            )
            named.add(module)
    assert len(named) > 60
    unnamed = sorted(
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if p.name not in named
        and p.name not in ("__init__.py", "__main__.py")
        and "migrations" not in p.parts
    )
    assert unnamed == [], f"modules the README's layout map does not name: {unnamed}"
