"""The package's import graph, read from the source with ``ast`` (nothing is imported or run):

* no import cycle among ``avatar3d``'s modules (imports inside functions count: a lazy import hides a
  cycle from Python's loader, not from the design);
* no ``_private`` name imported from another ``avatar3d`` module (``from .x import _y``, or ``x._y`` on an
  imported module): what two modules share is public;
* the runtime (everything but ``avatar3d.calibration`` and ``avatar3d.synthetic``) never imports the
  calibration or synthetic-data packages: those produce the shipped data files and test fixtures, they
  do not run when a user tracks, views or exports.

An edge ``a -> b`` means module ``a`` imports module ``b`` or a name from it. ``from pkg import name``
counts as importing ``pkg.name`` when that is a module, else ``pkg`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "avatar3d"
ROOT = Path(__file__).resolve().parent.parent
OFF_RUNTIME = ("avatar3d.calibration", "avatar3d.synthetic")  # packages the runtime must not import


@dataclass
class ImportGraph:
    """Modules of one package by dotted name, their import edges and cross-module private names."""

    files: dict[str, Path]
    edges: dict[str, set[str]] = field(default_factory=dict)
    private: list[tuple[str, str, str]] = field(default_factory=list)  # (importer, module, name)

    @classmethod
    def read(cls, root: Path, package: str = PACKAGE) -> "ImportGraph":
        files = {}
        for p in sorted((root / package).rglob("*.py")):
            parts = list(p.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = p
        g = cls(files)
        for name, path in files.items():
            g._scan(name, ast.parse(path.read_text(), filename=str(path)), is_package=path.name == "__init__.py")
        return g

    # ------------------------------------------------------------------------------------ reading
    def _resolve(self, importer: str, level: int, module: str | None, is_package: bool) -> str:
        """Absolute dotted name of ``from <level dots><module> import ...`` inside ``importer``."""
        if level == 0:
            return module or ""
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def _scan(self, importer: str, tree: ast.AST, is_package: bool) -> None:
        edges = self.edges.setdefault(importer, set())
        aliases: dict[str, str] = {}  # local name -> avatar3d module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = self._resolve(importer, node.level, node.module, is_package)
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in self.files:
                        edges.add(sub)
                        aliases[a.asname or a.name] = sub
                    else:
                        if target in self.files:
                            edges.add(target)
                        if _is_private(a.name):
                            self.private.append((importer, target, a.name))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in self.files:
                        edges.add(a.name)
                        if a.asname:
                            aliases[a.asname] = a.name
        # `mod._name` on a module bound by an import is the same as importing `_name` from it.
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _is_private(node.attr):
                module = aliases.get(node.value.id)
                if module is not None and module != importer and f"{module}.{node.attr}" not in self.files:
                    self.private.append((importer, module, node.attr))
        edges.discard(importer)

    # ------------------------------------------------------------------------------------ queries
    def cycles(self) -> list[tuple[list[str], list[str]]]:
        """(one concrete cycle a -> ... -> a, all the modules tied together with it) per strongly connected
        component of more than one module."""
        return [(self._cycle_in(c), sorted(c)) for c in _strongly_connected(self.edges) if len(c) > 1]

    def _cycle_in(self, component: set[str]) -> list[str]:
        """Shortest cycle through the component's first module (breadth-first, inside the component)."""
        start = min(component)
        parent: dict[str, str] = {}
        frontier = [start]
        while frontier:
            nxt = []
            for v in frontier:
                for w in sorted(self.edges[v] & component):
                    if w == start:
                        path = [v]
                        while path[-1] != start:
                            path.append(parent[path[-1]])
                        return [start, *reversed(path[:-1]), start]
                    if w not in parent:
                        parent[w] = v
                        nxt.append(w)
            frontier = nxt
        raise AssertionError(f"no cycle in component {sorted(component)}")

    def importers_of(self, packages: tuple[str, ...]) -> list[tuple[str, str]]:
        """(importer, imported) for modules outside ``packages`` that import a module inside them."""
        def inside(m: str) -> bool:
            return any(m == p or m.startswith(p + ".") for p in packages)

        return sorted((a, b) for a, bs in self.edges.items() if not inside(a) for b in bs if inside(b))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on deep graphs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in edges:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                out.append(comp)
    return out


# ---------------------------------------------------------------------------------------- tests
def test_the_graph_reader_sees_relative_absolute_and_lazy_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import A\n")
    (pkg / "sub" / "a.py").write_text("A = 1\ndef f():\n    from ..b import _hidden\n")
    (pkg / "b.py").write_text("import avatar3d.sub.a as a\n_hidden = a._B\n")
    (pkg / "c.py").write_text("from avatar3d.sub import A\nfrom . import b\n")
    g = ImportGraph.read(tmp_path)
    assert g.edges["avatar3d.sub"] == {"avatar3d.sub.a"}
    assert g.edges["avatar3d.sub.a"] == {"avatar3d.b"}  # lazy, relative
    assert g.edges["avatar3d.c"] == {"avatar3d.sub", "avatar3d.b"}
    assert sorted(g.private) == [("avatar3d.b", "avatar3d.sub.a", "_B"), ("avatar3d.sub.a", "avatar3d.b", "_hidden")]
    assert g.cycles() == [(["avatar3d.b", "avatar3d.sub.a", "avatar3d.b"], ["avatar3d.b", "avatar3d.sub.a"])]


def test_no_import_cycle_inside_the_package():
    cycles = ImportGraph.read(ROOT).cycles()
    assert not cycles, "import cycles in avatar3d/:\n" + "\n".join(
        f"  {' -> '.join(c)}  ({len(m)} modules tied in cycles: {', '.join(m)})" for c, m in cycles)


def test_no_private_name_is_imported_from_another_module():
    private = sorted(set(ImportGraph.read(ROOT).private))
    assert not private, "private names used across modules (make them public or keep them in their module):\n" + "\n".join(
        f"  {importer} uses {module}.{name}" for importer, module, name in private)


def test_the_runtime_does_not_import_calibration_or_synthetic_data():
    g = ImportGraph.read(ROOT)
    present = tuple(p for p in OFF_RUNTIME if p in g.files)  # packages not (yet) in the tree have no importers
    bad = g.importers_of(present)
    assert not bad, "runtime modules importing calibration / synthetic-data code:\n" + "\n".join(f"  {a} -> {b}" for a, b in bad)



def test_no_test_module_imports_another():
    """Shared fixtures live in tests/conftest.py and shared helpers in tests/helpers/, so test modules stay independent.
    Read as text line by line: the scripts a test runs in a child process (source in a string) count too."""
    import re

    tests = ROOT / "tests"
    names = {p.stem for p in tests.glob("test_*.py")}
    statement = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][\w.]*)", re.M)
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted(tests.rglob("*.py"))
           for m in statement.findall(p.read_text()) if m.split(".")[0] in names]
    assert not bad, "\n".join(bad)
