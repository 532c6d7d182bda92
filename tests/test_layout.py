"""The package's dependency direction, enforced by parsing imports."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "arithinterp"
# Lower layers never import higher ones (same-layer imports are allowed).
LAYERS = {
    "tasks": 0, "runs": 0, "viz": 0,
    "models": 1,
    "evaluate": 2,
    "train": 3, "cache": 3,
    "analysis": 4, "probes": 4, "fourier": 4,
    "localize": 5, "finetune": 5,
    "pipeline": 6,
    "cli": 7,
}
COMPUTE = {m for m, layer in LAYERS.items() if m not in ("tasks", "runs", "viz")}


def _module_of(path: Path) -> str:
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "arithinterp" and len(parts) > 1:
                found.add(parts[1])
            found.add("streamlit" if parts[0] == "streamlit" else "")
    return found - {""}


def test_every_module_has_a_layer():
    modules = {_module_of(p) for p in PKG.rglob("*.py")} - {"__init__"}
    assert modules <= set(LAYERS), modules - set(LAYERS)


def test_imports_point_downwards_and_never_to_streamlit():
    for path in PKG.rglob("*.py"):
        mod = _module_of(path)
        if mod == "__init__":
            continue
        for dep in _imports(path):
            assert dep != "streamlit", f"{path} imports streamlit"
            assert LAYERS[dep] <= LAYERS[mod], f"{path}: {mod} must not import {dep}"
            if mod in ("runs", "viz"):
                assert dep not in COMPUTE, f"{path}: {mod} must not import compute module {dep}"
