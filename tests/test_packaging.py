"""The repository as a newcomer meets it: loaded by ComfyUI from a folder of any name, tested
from a clone named ``ComfyUI-Harmony``, installed as a wheel, described for the registry."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)


def _exec_root_init(name: str):
    """Execute the root __init__.py under ``name``, as an importer would; sys.modules restored."""
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        return module
    finally:
        for key in set(sys.modules) - before:
            del sys.modules[key]


def test_comfyui_loads_the_pack_from_a_folder_whose_name_is_not_an_identifier():
    # ComfyUI 0.3.64 (nodes.load_custom_node): spec_from_file_location(<folder path, "." -> "_x_">,
    # <folder>/__init__.py), so the pack is a package with a name like this one.
    name = "/home/user/ComfyUI/custom_nodes/ComfyUI-Harmony"
    module = _exec_root_init(name)
    mappings = module.NODE_CLASS_MAPPINGS
    assert {"HarmonyModelLoader", "HarmonyTextConditioning", "HarmonySyncCFGSampler",
            "HarmonyDecode"} <= set(mappings)
    assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(mappings)
    # the nodes came through the package (relative import), not from a top-level `nodes`
    assert mappings["HarmonyModelLoader"].__module__ == name + ".nodes.model_loader"
    web = os.path.join(ROOT, module.WEB_DIRECTORY)
    assert any(f.endswith(".js") for f in os.listdir(web))


def test_root_init_imported_as_a_lone_module_uses_the_top_level_nodes():
    # What pytest does in a clone named ComfyUI-Harmony: module "__init__", no package.
    import nodes

    module = _exec_root_init("__init__")
    assert module.__package__ == ""
    assert module.NODE_CLASS_MAPPINGS is nodes.NODE_CLASS_MAPPINGS


@pytest.mark.slow
def test_pytest_runs_in_a_clone_named_comfyui_harmony(tmp_path):
    clone = tmp_path / "ComfyUI-Harmony"
    (clone / "tests").mkdir(parents=True)
    for name in ("__init__.py", "pyproject.toml"):
        shutil.copy(os.path.join(ROOT, name), clone / name)
    for name in ("nodes", "harmony"):
        os.symlink(os.path.join(ROOT, name), clone / name)
    shutil.copy(os.path.join(ROOT, "tests", "conftest.py"), clone / "tests" / "conftest.py")
    (clone / "tests" / "test_one.py").write_text(
        "import nodes\n\n\ndef test_nodes_import():\n    assert 'HarmonyDecode' in nodes.NODE_CLASS_MAPPINGS\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=clone,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout


def test_registry_metadata_and_requirements_agree():
    data = _pyproject()
    project, comfy = data["project"], data["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", project["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and os.path.isfile(os.path.join(ROOT, project["license"]["file"]))
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"].startswith("https://")
    assert project["scripts"]["harmony"] == "harmony.__main__:main"
    # requirements.txt (inside ComfyUI) == the package's dependencies, except torch (ComfyUI's own)
    with open(os.path.join(ROOT, "requirements.txt")) as fh:
        reqs = {line.strip() for line in fh if line.strip() and not line.startswith("#")}
    assert reqs == set(project["dependencies"]) - {"torch"}


def _can_build_wheels() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1):  # bdist_wheel built in
        return True
    return importlib.util.find_spec("wheel") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _can_build_wheels(), reason="needs setuptools >= 70.1 (or the wheel package) "
                                                    "to build without network")
def test_wheel_holds_the_harmony_package_with_its_weights_and_the_console_entry(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "venv", "__pycache__", "build", "*.egg-info", "fixtures", "runs", "out"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"harmony"}  # no nodes/, js/, workflows/, tests/, scripts/ or root __init__.py
    for asset in os.listdir(os.path.join(ROOT, "harmony", "assets")):
        if asset.endswith(".safetensors"):
            assert f"harmony/assets/{asset}" in names
    for sub in ("codecs", "world"):
        assert f"harmony/{sub}/__init__.py" in names
    assert re.search(r"^harmony = harmony\.__main__:main$", entry_points, re.M)
