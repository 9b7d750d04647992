"""Print the import graph's faults among the ``harmony`` modules: circles, upward arrows and
private names imported across modules.

    python scripts/import_graph.py            # faults only; exit status 1 when there is one
    python scripts/import_graph.py --edges    # every arrow, then the faults

Read with ``ast`` (nothing is imported): every ``import`` / ``from ... import`` of a harmony
module, at module level or inside a function (a lazy import still ties the two modules, so it
counts; one under ``if TYPE_CHECKING:`` does not, as it never runs). An arrow to a package
(``from . import codecs``) counts as one to its ``__init__``.

- A *circle* is a strongly connected set of modules (A imports B imports ... imports A).
- An *upward arrow* runs from a lower layer to a higher one (:data:`LAYERS`, bottom first): the
  model core never reaches into file and media I/O, I/O never into the parts built from files
  (model files, codecs, text encoders), those never into the pipeline, the pipeline never into
  the tools. Modules of one layer may import each other (without a circle).
- A *private import* is ``from .x import _name`` across modules (a leading underscore says
  "mine only"); a package's ``__init__`` may gather its own submodules' names.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "harmony"

LAYERS = (
    ("base", ("config", "ops", "rope", "attention", "keymap")),
    ("model", ("tower", "interaction", "model", "guidance", "sampling", "jobs", "job_weights", "offload", "flops", "parallel")),
    ("io", ("files", "validate", "media", "cli", "weightfile", "world")),
    ("parts", ("families", "keymatch", "checkpoint", "codecs", "text", "conditioner", "umt5")),
    ("pipeline", ("builder", "pipeline", "framesize", "components", "lazy_codecs", "umt5_conditioner", "assemble")),
    ("tools", ("metrics", "batch_generate", "evaluate", "controls", "ablate", "probe", "lab", "train", "clips",
               "distributed", "bench", "__main__")),
)
"""Layers, bottom first: a module's layer is that of its top-level name under ``harmony``
(``harmony.codecs.wan_vae`` -> ``codecs``; ``harmony.train_state`` -> ``train`` by prefix).
Within ``codecs``, the toy tooling (``train_toy``, ``eval_toy``, ``__main__``) is a tool and the
codec contract (``contract``) is base."""

TOOL_SUBMODULES = {"harmony.codecs.train_toy", "harmony.codecs.eval_toy", "harmony.codecs.__main__"}
BASE_SUBMODULES = {"harmony.codecs.contract"}  # the codec contract: Protocols and numbers, imports nothing


def modules(root: str = ROOT) -> dict:
    """Dotted module name -> file path, for every ``.py`` file under ``harmony/``."""
    out = {}
    base = os.path.join(root, PACKAGE)
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join(rel)] = os.path.join(folder, name)
    return out


def _resolve(current: str, is_package: bool, level: int, target) -> str:
    if level == 0:
        return target or ""
    parts = current.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def imports(mods: dict) -> list:
    """``(importer, imported, names, line)`` for every import of a harmony module by a harmony module;
    ``names``: the names a ``from`` import takes (empty for a plain ``import``)."""
    out = []
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        is_package = path.endswith("__init__.py")
        typing_only = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods:
                        out.append((mod, alias.name, (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_package, node.level, node.module)
                if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                    continue
                plain = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in mods:  # `from . import codecs`: an arrow to the submodule itself
                        out.append((mod, sub, (), node.lineno))
                    else:
                        plain.append(alias.name)
                if plain and base in mods:
                    out.append((mod, base, tuple(plain), node.lineno))
    return [e for e in out if e[0] != e[1]]


def layer(mod: str) -> int:
    if mod in TOOL_SUBMODULES:
        return len(LAYERS) - 1
    if mod in BASE_SUBMODULES:
        return 0
    top = mod.split(".")[1] if "." in mod else ""
    for i, (_, names) in enumerate(LAYERS):
        if top in names:
            return i
    for i, (_, names) in enumerate(LAYERS):
        if any(top.startswith(n + "_") for n in names):
            return i
    return -1


def circles(edges) -> list:
    """The strongly connected sets of two or more modules (Tarjan), each sorted."""
    graph = {}
    for a, b, *_ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def upward(edges) -> list:
    """``(importer, imported, line)`` for each arrow from a lower layer to a higher one."""
    return sorted({(a, b, line) for a, b, _, line in edges if layer(b) > layer(a) >= 0})


def private(edges) -> list:
    """``(importer, imported, name, line)`` for each private name imported across modules."""
    out = []
    for a, b, names, line in edges:
        if a.startswith(b + ".") and a.rsplit(".", 1)[0] == b:
            continue  # a submodule reading its own package's __init__
        if b.startswith(a + ".") and a != PACKAGE:
            continue  # a package __init__ gathering its own submodules
        out += [(a, b, n, line) for n in names if n.startswith("_") and not n.startswith("__")]
    return sorted(out)


def unlayered(mods) -> list:
    return sorted(m for m in mods if m != PACKAGE and layer(m) < 0)


def report(root: str = ROOT, show_edges: bool = False) -> tuple:
    """``(text, number of faults)``."""
    mods = modules(root)
    edges = imports(mods)
    lines = []
    if show_edges:
        lines += [f"{a} -> {b}  (line {line})" for a, b, _, line in sorted(edges)]
    found = circles(edges)
    up = upward(edges)
    priv = private(edges)
    loose = unlayered(mods)
    lines.append(f"{len(mods)} modules, {len({(a, b) for a, b, *_ in edges})} arrows")
    lines.append(f"circles: {len(found)}")
    lines += ["  " + " <-> ".join(c) for c in found]
    lines.append(f"upward arrows: {len(up)}")
    lines += [f"  {a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})  line {line}" for a, b, line in up]
    lines.append(f"private names imported across modules: {len(priv)}")
    lines += [f"  {a}:{line} imports {b}.{n}" for a, b, n, line in priv]
    if loose:
        lines.append(f"modules in no layer (add them to LAYERS): {len(loose)}")
        lines += ["  " + m for m in loose]
    return "\n".join(lines), len(found) + len(up) + len(priv) + len(loose)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edges", action="store_true", help="print every arrow first")
    p.add_argument("--root", default=ROOT, help="the repository root (default: this script's)")
    a = p.parse_args(argv)
    text, faults = report(a.root, a.edges)
    print(text)
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
