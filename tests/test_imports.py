"""Dependencies point down: no import cycle among loptim's modules, counting imports inside functions and the
package __init__ files an import runs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent / "loptim"


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The loptim modules `name` imports anywhere in its file, with the packages whose __init__ that runs (except
    its own ancestors, which are initialized before it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    found = set()
    for target in targets:
        if not target.startswith("loptim"):
            continue
        pieces = target.split(".")
        for i in range(1, len(pieces) + 1):
            prefix = ".".join(pieces[:i])
            if prefix in modules and prefix not in ancestors and prefix != name:
                found.add(prefix)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph = import_graph()
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_imports_inside_functions_and_the_packages_they_run(tmp_path):
    modules = module_names()
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from loptim.optimizers.lhopt.features import safe_log\n")
    found = imports_of("loptim.probe", path, modules)
    assert found == {"loptim.optimizers", "loptim.optimizers.lhopt", "loptim.optimizers.lhopt.features"}


def test_no_import_cycles():
    assert cycles() == []


def test_the_deployed_lhopt_never_imports_meta_training():
    graph, reached, todo = import_graph(), set(), ["loptim.optimizers.lhopt"]
    while todo:
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    assert "loptim.optimizers.lhopt.shell" in reached  # the walk follows the package's imports
    assert sorted(m for m in reached if m.startswith("loptim.meta")) == []
