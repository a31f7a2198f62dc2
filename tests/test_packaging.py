"""What the installed package ships: one version, typing files whose names and signatures match
the native modules, and the wheel's metadata."""
import ast
import enum
import importlib
import importlib.metadata
import inspect
import json
import pathlib
import types

import pytest

import bpcore

NATIVE = ["_spin", "_blas", "_layers", "_losses", "_optim", "_rng", "_threads", "_simd", "_engine",
          "_bench"]
PKG_DIR = pathlib.Path(bpcore.__file__).resolve().parent


def _distribution():
    try:
        return importlib.metadata.distribution("bpcore")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("bpcore is not installed as a distribution (imported from a path)")


def _editable(dist):
    text = dist.read_text("direct_url.json")
    return bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)


def test_version_is_the_distribution_version():
    assert bpcore.__version__ == _distribution().version


def test_py_typed_and_a_stub_for_every_native_module():
    assert (PKG_DIR / "py.typed").is_file()
    for name in NATIVE:
        assert (PKG_DIR / f"{name}.pyi").is_file(), f"{name}.pyi missing beside {PKG_DIR}"


def _stub(name):
    """{public name: ast node} at the top level of the stub, and of each class in it."""
    tree = ast.parse((PKG_DIR / f"{name}.pyi").read_text(encoding="utf-8"))
    top, classes = {}, {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top[node.target.id] = node
        if isinstance(node, ast.ClassDef):
            members = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.setdefault(item.name, item)  # a property's getter comes first
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members[item.target.id] = item
                elif isinstance(item, ast.Assign):
                    members.update({t.id: item for t in item.targets if isinstance(t, ast.Name)})
            classes[node.name] = members
    return {k: v for k, v in top.items() if not k.startswith("_")}, classes


def _public(obj):
    return {n for n in dir(obj) if not n.startswith("_")
            and not isinstance(getattr(obj, n), types.ModuleType)}


def _stub_params(fn):
    a = fn.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    return [n for n in names if n != "self"]


def _runtime_params(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = [p.name for p in sig.parameters.values()
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return [n for n in names if n != "self"]


@pytest.mark.parametrize("name", NATIVE)
def test_stub_names_and_signatures_match_the_native_module(name):
    mod = importlib.import_module(f"bpcore.{name}")
    top, classes = _stub(name)
    assert set(top) == _public(mod), f"bpcore/{name}.pyi and bpcore.{name} list different names"
    for attr, node in top.items():
        obj = getattr(mod, attr)
        if isinstance(node, ast.FunctionDef):
            runtime = _runtime_params(obj)
            if runtime is not None:
                assert _stub_params(node) == runtime, f"{name}.{attr}: parameters differ"
        elif isinstance(node, ast.ClassDef):
            members = classes[attr]
            public = {k for k in members if not k.startswith("_")}
            expected = set(obj.__members__) if isinstance(obj, enum.EnumMeta) else _public(obj)
            assert public == expected, f"{name}.{attr}: members differ"
            for m in public:
                if isinstance(members[m], ast.FunctionDef) and inspect.isroutine(getattr(obj, m)):
                    runtime = _runtime_params(getattr(obj, m))
                    if runtime is not None:
                        assert _stub_params(members[m]) == runtime, f"{name}.{attr}.{m}: differ"


def test_metadata():
    dist = _distribution()
    if _editable(dist):
        pytest.skip("editable install: its metadata is as old as the last `pip install -e`")
    meta = dist.metadata
    assert meta["Name"] == "bpcore"
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.10"
    assert meta.get_all("Project-URL")
    classifiers = meta.get_all("Classifier")
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert "bpcore" in (meta["Description"] or meta.get_payload() or "")
    assert any(str(f).endswith("LICENSE") for f in dist.files or [])


def _unbuilt_tree(tmp_path):
    """A copy of the package's Python files without its compiled modules: what a fresh clone's
    bpcore/ folder is."""
    tree = tmp_path / "bpcore"
    tree.mkdir()
    for f in PKG_DIR.glob("*.py"):
        (tree / f.name).write_bytes(f.read_bytes())
    return tmp_path


def _run_in(folder, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True,
                          timeout=300)


def test_a_source_tree_on_the_path_hands_over_to_the_installed_build(tmp_path):
    root = _unbuilt_tree(tmp_path)
    out = _run_in(root, "-c", "import bpcore; print(bpcore.__file__); print(bpcore.MLP([3, 2]))")
    assert out.returncode == 0, out.stderr
    assert pathlib.Path(out.stdout.splitlines()[0]).resolve().parent == PKG_DIR
    out = _run_in(root, "-m", "bpcore.demo", "--epochs", "1")
    assert out.returncode == 0, out.stderr
    assert "held-out accuracy" in out.stdout


def test_a_source_tree_without_an_installed_build_says_what_to_do(tmp_path):
    root = _unbuilt_tree(tmp_path)
    out = _run_in(root, "-S", "-c", "import bpcore")  # -S: no site-packages, no installed build
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: bpcore:") and "uncompiled source tree" in last
    assert "pip install ." in last
