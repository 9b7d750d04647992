"""The import graph of ``harmony`` (scripts/import_graph.py): no circle, no upward arrow, no private
name imported across modules, every module in a layer; and the checker finds each fault in a
hand-made package."""
import importlib.util
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 600


@pytest.fixture(scope="module")
def graph():
    spec = importlib.util.spec_from_file_location("import_graph", os.path.join(ROOT, "scripts", "import_graph.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_harmony_has_no_circle_no_upward_arrow_no_private_import(graph):
    mods = graph.modules(ROOT)
    edges = graph.imports(mods)
    assert graph.circles(edges) == []
    assert graph.upward(edges) == []
    assert graph.private(edges) == []
    assert graph.unlayered(mods) == []


def test_no_module_of_harmony_or_nodes_is_over_600_lines():
    long = []
    for top in ("harmony", "nodes"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as fh:
                        n = sum(1 for _ in fh)
                    if n > MAX_LINES:
                        long.append(f"{os.path.relpath(path, ROOT)}: {n}")
    assert not long, f"over {MAX_LINES} lines (split by job): {long}"


def _write(root, files: dict):
    for rel, text in files.items():
        path = os.path.join(root, "harmony", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(textwrap.dedent(text))


def test_the_checker_finds_a_circle_an_upward_arrow_and_a_private_import(graph, tmp_path):
    _write(str(tmp_path), {
        "__init__.py": "",
        "config.py": "from .model import HarmonyModel\n",                     # base -> model: upward
        "model.py": "HarmonyModel = object\n",
        "families.py": "def f():\n    from .checkpoint import load_model\n",  # a lazy import counts
        "checkpoint.py": "from .families import f, _hidden\nload_model = f\n",  # circle + a private name
        "media.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .pipeline import P\n",
        "pipeline.py": "P = 1\n",
        "codecs/__init__.py": "from .wan_vae import _Block\n",                # a package gathers its own: fine
        "codecs/wan_vae.py": "_Block = 1\n",
        "mystery.py": "",
    })
    text, faults = graph.report(str(tmp_path))
    assert "circles: 1\n  harmony.checkpoint <-> harmony.families" in text
    assert "upward arrows: 1\n  harmony.config (base) -> harmony.model (model)  line 1" in text  # not media's
    assert "private names imported across modules: 1\n  harmony.checkpoint:1 imports harmony.families._hidden" in text
    assert "modules in no layer (add them to LAYERS): 1\n  harmony.mystery" in text
    assert faults == 4
    assert graph.main(["--root", str(tmp_path)]) == 1
