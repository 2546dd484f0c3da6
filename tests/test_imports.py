"""The package's import graph: no cycle between modules and no module importing another's `_private` names.

Walks every module's imports with ast (function-level imports included: a lazy import is still a dependency)."""
from __future__ import annotations

import ast
from pathlib import Path

import deeploy_dsl

PKG = Path(deeploy_dsl.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import of a deeploy_dsl module in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:           # `from pkg import module`
                    found.append((sub, None))
                elif base in known:
                    found.append((base, a.name))
    return found


def graph() -> dict[str, list[tuple[str, str | None]]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_walk_sees_the_compiler_imports():
    g = graph()
    assert ("deeploy_dsl.passes.arena", "allocate") in g["deeploy_dsl.compiler"]
    assert ("deeploy_dsl.kernels.twins", None) in g["deeploy_dsl.quant.quantize"]


def test_no_import_cycle_between_modules():
    # a sub-package's __init__ imports nothing, so module-to-module edges are the whole graph
    packages = {n for n, p in modules().items() if p.name == "__init__.py"}
    edges = {n: {m for m, _ in deps if m != n and m not in packages} for n, deps in graph().items()}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_imported_from_another_module():
    private = sorted(f"{n} imports {name} from {m}" for n, deps in graph().items()
                     for m, name in deps if name and name.startswith("_") and not name.startswith("__") and m != n)
    assert private == []


def outside_uses(path: Path, known: dict[str, Path]) -> list[str]:
    """`_private` names a test or benchmark file takes from deeploy_dsl: imported by name, or read off an imported
    module (`K._x` after `import deeploy_dsl.kernels.twins as K`)."""
    tree = ast.parse(path.read_text(), str(path))
    aliases, found = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names if a.name in known})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deeploy_dsl"):
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                elif a.name.startswith("_"):
                    found.append(f"{path.name} imports {a.name} from {node.module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{path.name} reads {node.attr} of {aliases[node.value.id]}")
    return found


def test_tests_and_benchmarks_use_only_public_names():
    known = modules()
    root = PKG.parent
    files = sorted((root / "tests").glob("*.py")) + sorted((root / "bench").glob("*.py"))
    assert files, "tests/ and bench/ beside the package"
    assert sorted(u for f in files for u in outside_uses(f, known)) == []


def test_outside_uses_sees_a_private_import(tmp_path):
    f = tmp_path / "t.py"
    f.write_text("from deeploy_dsl.cli import _x\nimport deeploy_dsl.kernels.twins as K\nK._y\n"
                 "from deeploy_dsl.kernels import twins\ntwins._z\n")
    assert outside_uses(f, modules()) == ["t.py imports _x from deeploy_dsl.cli", "t.py reads _y of deeploy_dsl.kernels.twins",
                                          "t.py reads _z of deeploy_dsl.kernels.twins"]
