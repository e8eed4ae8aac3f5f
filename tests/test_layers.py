"""The package's layers: every module imports only from its own layer or the ones below, and no import closes a cycle.

Each module of `upo` belongs to one layer of `LAYERS` (the most specific pattern that names it: `upo.eval.settings` is
an option declaration, the rest of `upo.eval` sits above the trainer). The imports are read from the source with
`ast`, those inside functions included, so an import moved into a function to hide an arrow is still seen. A cycle
counts what an import runs: `import upo.a.b` runs `upo/a/__init__.py` first.

`python tests/test_layers.py` prints each module's layer and every import that breaks the rule.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "upo"

# Bottom first. A module may import from its own layer and any layer below it; never from a layer above.
LAYERS = [
    ("foundation: errors, files, the method records, option ranges, the run-folder contract, engine checks, YAML "
     "files, library errors at upo's boundaries, upo's log",
     ["upo", "upo.errors", "upo.files", "upo.threads", "upo.failures", "upo.environment", "upo.methods",
      "upo.config_checks", "upo.run_folder", "upo.engines", "upo.yaml_files", "upo.library_errors", "upo.logs"]),
    ("the mathematics: losses, log-probs, the value head", ["upo.losses", "upo.logps", "upo.value_head"]),
    ("models by name: loading, the SmolLM2 conversion, trained run folders", ["upo.models"]),
    ("designer rewards", ["upo.rewards"]),
    ("the objective: which losses a batch gets, the designer target", ["upo.objective"]),
    ("the data path", ["upo.data"]),
    ("preference scorers", ["upo.eval.scorers"]),
    ("options: UPOConfig, TRL's argument mirrors, upo eval's settings, option parsing, the preflight",
     ["upo.legacy_options", "upo.config", "upo.arguments", "upo.trl_config", "upo.eval.settings", "upo.option_types",
      "upo.options", "upo.preflight"]),
    ("training machinery", ["upo.training"]),
    ("the trainer", ["upo.trainer"]),
    ("evaluation", ["upo.eval"]),
    ("experiments: the data builder", ["upo.experiments"]),
    # the frontier's modules in the order of its docstring: each imports only those before it
    ("the frontier's intervals", ["upo.experiments.frontier.intervals"]),
    ("the frontier's fronts", ["upo.experiments.frontier.fronts"]),
    ("the frontier's target", ["upo.experiments.frontier.target"]),
    ("the frontier's config", ["upo.experiments.frontier.config"]),
    ("the frontier's state on disk", ["upo.experiments.frontier.state"]),
    ("the frontier's results", ["upo.experiments.frontier.results"]),
    ("the frontier's report", ["upo.experiments.frontier.report"]),
    ("the frontier's runner", ["upo.experiments.frontier.runner"]),
    ("upo frontier, upo demo", ["upo.experiments.frontier", "upo.experiments.demo"]),
    ("the command line", ["upo.cli"]),
]


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name, for its `__init__.py`)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """`(module, line)` of each `upo` module that `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from its package, one level up per dot after the first
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from upo.x import y` imports the module upo.x.y when there is one, else a name of upo.x
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import upo.x.y` of a name: its module
                target = target.rpartition(".")[0]
            if target and target != name and (target, node.lineno) not in found:
                found.append((target, node.lineno))
    return found


def layer_of(module: str) -> int:
    """The index in `LAYERS` of the most specific pattern naming `module`: a pattern names a module, and a package's
    modules too (`upo` alone names the package's `__init__`)."""
    best, best_length = None, -1
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            below = pattern != "upo" and module.startswith(pattern + ".")
            if (module == pattern or below) and len(pattern) > best_length:
                best, best_length = index, len(pattern)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def import_graph() -> dict[str, list[tuple[str, int]]]:
    modules = module_files()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def upward_imports(graph) -> list[str]:
    out = []
    for module, targets in graph.items():
        for target, line in targets:
            if layer_of(target) > layer_of(module):
                out.append(f"{module} (line {line}, layer {LAYERS[layer_of(module)][0].split(':')[0]!r}) imports "
                           f"{target} (layer {LAYERS[layer_of(target)][0].split(':')[0]!r})")
    return out


def runtime_edges(graph) -> dict[str, set[str]]:
    """What importing each module runs: the modules it imports and, for each, its parent packages' `__init__`."""
    edges = {}
    for module, targets in graph.items():
        edges[module] = set()
        for target, _ in targets:
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                parent = ".".join(parts[:end])
                if parent in graph and parent != module and not module.startswith(parent + "."):
                    edges[module].add(parent)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def shortest_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One shortest cycle through the first module of a strongly connected component, as the path that closes it."""
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(edges.get(node, ())):
            if other == start:
                return [*paths[node], start]
            if other in component and other not in paths:
                paths[other] = [*paths[node], other]
                queue.append(other)
    raise AssertionError(f"{component} is not a cycle")


def describe_cycles(edges: dict[str, set[str]]) -> list[str]:
    return [" -> ".join(shortest_cycle(component, edges)) for component in cycles(edges)]


def test_every_module_has_a_layer():
    for module in module_files():
        layer_of(module)


def test_no_import_from_a_higher_layer():
    upward = upward_imports(import_graph())
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycle():
    found = describe_cycles(runtime_edges(import_graph()))
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """The rules fail where they should: an import hidden in a function that points up, and a two-module cycle."""
    graph = {"upo.errors": [("upo.cli", 3)], "upo.cli": [("upo.errors", 1)]}
    assert upward_imports(graph) == ["upo.errors (line 3, layer 'foundation') imports upo.cli (layer 'the command "
                                     "line')"]
    assert describe_cycles(runtime_edges(graph)) == ["upo.cli -> upo.errors -> upo.cli"]
    source = tmp_path / "upo" / "errors.py"
    source.parent.mkdir()
    source.write_text("def late():\n    from upo.cli import main\n")
    modules = {"upo.errors": source, "upo.cli": source}
    assert imports("upo.errors", source, modules) == [("upo.cli", 2)]


if __name__ == "__main__":
    graph = import_graph()
    for name in sorted(graph, key=lambda m: (layer_of(m), m)):
        print(f"{layer_of(name):2d} {name}")
    problems = upward_imports(graph) + describe_cycles(runtime_edges(graph))
    print("\n".join(problems) or "no upward import, no cycle")
    sys.exit(1 if problems else 0)
