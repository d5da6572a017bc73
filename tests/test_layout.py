"""The house's layout, read from the code's imports: layers point one way and nothing imports in a circle.

data_adapters/ reads archives and writes manifests; it is the lowest layer, so a hospital can
run it (prepare, de-identify) without the method. fedtar/ (the method) builds on it; clients/
and aggregator/ (the Flower apps) build on both and never on each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_adapters", "fedtar", "clients", "aggregator")
# What each package may import from the others (imports inside a package are free).
ALLOWED = {
    "data_adapters": set(),
    "fedtar": {"data_adapters"},
    "clients": {"data_adapters", "fedtar"},
    "aggregator": {"data_adapters", "fedtar", "clients"},
}


# The front door (the `fedtar` commands, the Python API, and the docs' reference generated from the
# commands) drives the Flower apps: it sits above every package, and nothing but the front door imports it.
FRONT_DOOR = {"fedtar.cli", "fedtar.api", "fedtar.docs_reference"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Project modules this file imports (at any depth in the file: lazy imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    edges = {}
    for p in files:
        # an imported name that is not a module (a function) stands for its module
        edges[module_name(p)] = {m if m in modules else m.rsplit(".", 1)[0] for m in imports(p)} & modules
    return edges


def test_packages_import_only_the_layers_below_them():
    edges = graph()
    wrong = [f"{src} imports {dst}" for src, dsts in edges.items() if src not in FRONT_DOOR for dst in dsts
             if dst.split(".")[0] != src.split(".")[0] and dst.split(".")[0] not in ALLOWED[src.split(".")[0]]]
    assert not wrong, wrong
    above = [f"{src} imports {dst}" for src, dsts in edges.items() if src not in FRONT_DOOR
             for dst in dsts & FRONT_DOOR]
    assert not above, above


def test_no_import_cycles():
    edges = graph()
    # A module's own package __init__ is imported by every module in it; that is no cycle of design.
    edges = {m: {d for d in ds if not m.startswith(d + ".")} for m, ds in edges.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles[:5]


def test_the_graph_sees_imports():
    # The test above would pass on an empty graph: check it reads what is there.
    edges = graph()
    assert "data_adapters.findings" in edges["fedtar.data.exams"]
    assert "fedtar.config" in edges["aggregator.server_loop"]


def test_fedtar_sub_packages_depend_one_way():
    """fedtar/ is sub-packages of one concern each (generator, data, learning, scoring, trust, operations):
    no two of them import each other. fedtar.config is the exception by design: it gathers the config
    dataclasses that live next to the layers they configure (peft's style), and every layer reads it."""
    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "fedtar" and len(parts) > 2 else module

    pairs = {(package(src), package(dst)) for src, dsts in graph().items() if src.startswith("fedtar.")
             for dst in dsts if dst.startswith("fedtar.") and package(src) != package(dst)}
    mutual = sorted((a, b) for a, b in pairs if (b, a) in pairs and a < b and "fedtar.config" not in (a, b))
    assert not mutual, mutual
    sub_packages = {p for pair in pairs for p in pair if p.count(".") == 1 and (ROOT / p.replace(".", "/")).is_dir()}
    assert {"fedtar.generator", "fedtar.data", "fedtar.learning", "fedtar.scoring", "fedtar.trust",
            "fedtar.operations"} <= sub_packages
    loose = sorted(p.name for p in (ROOT / "fedtar").glob("*.py"))
    # At fedtar/'s top: the front door and the one config system only.
    assert loose == ["__init__.py", "api.py", "cli.py", "config.py", "demo.py", "docs_reference.py"], loose
