"""The package's layout: no import cycles between trmask's modules (lazy imports inside functions
count too), and integrations depend on the API, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trmask"
#: Thin public aliases of integrations (`import trmask.verl`): the only modules outside
#: integrations/ that may import it.
ALIASES = {"trmask.verl", "trmask.distributed"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(importer: str, is_package: bool, level: int, name: str | None) -> str:
    base = importer.split(".")
    base = base if is_package else base[:-1]
    if level:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + (name.split(".") if name else [])) if level else name


def import_edges(known: dict) -> dict:
    """Module -> the trmask modules it imports anywhere in its source (top level or in a function)."""
    edges = {}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = resolve(name, is_package, node.level, node.module)
                # `from . import _ffi` imports the submodule _ffi; other names come from `source`.
                submodules = {f"{source}.{alias.name}" for alias in node.names} & set(known)
                targets.update(submodules)
                if len(submodules) < len(node.names):
                    targets.add(source)
        edges[name] = {t for t in targets if t in known and t != name}
    return edges


def find_cycle(edges: dict):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_checker_sees_lazy_relative_imports():
    edges = import_edges(modules())
    assert "trmask._api" in edges["trmask._importance"]
    assert "trmask._ffi" in edges["trmask._api"]  # `from . import _arrays, _ffi`
    assert "trmask" not in edges["trmask._api"]
    assert "trmask" in edges["trmask.cli"]  # `import trmask` inside a function


def test_no_import_cycles():
    cycle = find_cycle(import_edges(modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_integrations_depend_on_the_api_never_the_reverse():
    edges = import_edges(modules())
    offenders = [(source, target) for source, targets in edges.items() for target in targets
                 if target.startswith("trmask.integrations") and not source.startswith("trmask.integrations")
                 and source not in ALIASES]
    assert offenders == []
