"""The package's modules import each other without cycles (module-level and deferred imports
alike): each layer only reads the layers below it."""
import ast
import os

import tfkd

ROOT = os.path.dirname(tfkd.__file__)


def _modules():
    """{module name: path} for every tfkd module (packages as their __init__)."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for file in files:
            if file.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, file), os.path.dirname(ROOT))
                name = parts[:-3].replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = \
                    os.path.join(folder, file)
    return found


def import_graph():
    """{module: set of tfkd modules it imports anywhere in its file}. Importing a submodule
    implicitly runs its packages' __init__; those edges are not the module's own and are left
    out, as is a package's edge to its own submodules."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in
                           modules else node.module for alias in node.names]
            else:
                continue
            edges.update(target for target in targets if target in modules)
        graph[name] = {edge for edge in edges
                       if edge != name and not edge.startswith(name + ".") and edge != "tfkd"}
    return graph


def cycles(graph):
    """Every elementary cycle found by depth-first search, as a list of module names."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for edge in sorted(graph.get(node, ())):
            if state.get(edge) == "open":
                found.append(stack[stack.index(edge):] + [edge])
            elif edge not in state:
                visit(edge, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_the_graph_sees_deferred_imports():
    graph = import_graph()
    assert "tfkd.export_report" in graph["tfkd.export"]
    assert "tfkd.methods" in graph["tfkd.distillers.dkd"]


# `RunConfig.from_flags` / `to_flags` read the command line's flag table, which is built from
# RunConfig's fields: the one deferred pair left.
ALLOWED = [{"tfkd.cli.flags", "tfkd.experiment.config"}]


def test_no_import_cycles():
    found = [cycle for cycle in cycles(import_graph()) if set(cycle) not in ALLOWED]
    assert found == []


def test_the_search_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
