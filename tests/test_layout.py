"""The package's structure, enforced by parsing code: the layer order (also inside the
subpackages), no import cycles, hooks registered only by the intervention core, tests
mirroring the package, and artifact paths and component names spelled only in `schema` and
`components`."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "arithinterp"
# Lower layers never import higher ones (same-layer imports are allowed, cycles are not).
LAYERS = {
    "fields": 0, "tasks": 0, "components": 0, "schema": 0, "runs": 0, "viz": 0,
    "disk": 0, "manifest": 0, "catalog": 0,
    "models": 1, "pretrained": 1, "checkpoints": 1, "weights": 1,
    "core": 2,
    "evaluate": 3, "training": 3, "analysis": 3, "probes": 3, "fourier": 3, "llm": 3,
    "finetune": 3, "grokking": 3,
    "stages": 4,
    "studies": 5, "sweeps": 5,
    "cli": 6,
}
DATA_ONLY = {"fields", "tasks", "components", "schema", "runs", "viz", "disk",
             "manifest", "catalog"}  # import no compute modules
INNER = {  # order of the modules inside a subpackage
    "core": {"metrics": 0, "interventions": 0, "graph": 0, "fast": 1, "engine": 1, "cache": 2,
             "contrast": 2, "circuit": 2},
    "analysis": {"attention": 0, "localize": 0, "sources": 1,
                 "patching": 1, "attribution": 1, "attribution_patching": 2, "paths": 2,
                 "neurons": 2,
                 "suite": 3},
    "stages": {"base": 0, "train": 1, "evaluate": 1, "localize": 1, "probes": 1, "fourier": 1,
               "multiplication": 1, "finetune": 1, "modular": 1, "llm": 1, "llm_finetune": 1,
               "model": 2, "registry": 3, "job": 4},
    "tasks": {"vocab": 0, "spec": 1, "modular": 2, "data": 3, "prompts": 3, "corrupt": 4},
    "cli": {"common": 0, "options": 0, "llm": 1, "core": 2, "studies": 1, "sweeps": 1},
    "viz": {"common": 0, "training": 1, "evaluation": 1, "patching": 1, "attribution": 1,
            "neurons": 1, "attention": 1, "probes": 1, "fourier": 1, "multiplication": 1,
            "finetune": 1, "sweeps": 1},
    "training": {"plugins": 0, "config": 1, "recipes": 2, "checkpoints": 2, "loop": 3},
    "sweeps": {"spec": 0, "results": 1, "run": 2},
    "probes": {"fit": 0, "geometry": 0, "targets": 1, "summary": 1, "sweep": 2},
}


def _module_of(path: Path) -> str:
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Package modules (dotted, below arithinterp) and 'streamlit' that a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "arithinterp" and len(parts) > 1:
                found.add(".".join(parts[1:]))
            if parts[0] == "streamlit":
                found.add("streamlit")
    return found


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__")


def test_every_module_has_a_layer_and_every_layer_a_module():
    modules = {_module_of(p) for p in PKG.rglob("*.py")} - {"__init__"}
    assert modules <= set(LAYERS), modules - set(LAYERS)
    for pkg, order in INNER.items():
        inner = {p.stem for p in (PKG / pkg).glob("*.py")} - {"__init__"}
        assert inner == set(order), (pkg, inner ^ set(order))


def test_imports_point_downwards_and_never_to_streamlit():
    for path in PKG.rglob("*.py"):
        mod = _module_of(path)
        if mod == "__init__":
            continue
        for dep in _imports(path):
            assert dep != "streamlit", f"{path} imports streamlit"
            top = dep.split(".")[0]
            if top not in LAYERS:
                continue  # a name imported from the package's __init__
            assert LAYERS[top] <= LAYERS[mod], f"{path}: {mod} must not import {top}"
            if mod in DATA_ONLY:
                assert top in DATA_ONLY, f"{path}: {mod} must not import compute module {top}"
            if top == mod and mod in INNER and len(path.relative_to(PKG).parts) > 1 \
                    and path.stem != "__init__":
                inner = dep.split(".")[1] if "." in dep else None
                order = INNER[mod]
                if inner in order:
                    assert order[inner] <= order[path.stem], \
                        f"{path}: {path.stem} must not import {mod}.{inner}"


def test_no_import_cycles():
    graph = {}
    modules = {_dotted(p): p for p in PKG.rglob("*.py")}
    for name, path in modules.items():
        graph[name] = {d for d in _imports(path) if d in modules and d != name}
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(node):])} -> "
                                 f"{node}")
        if node in seen:
            return
        stack.append(node)
        for dep in graph[node]:
            visit(dep)
        stack.pop()
        seen.add(node)

    for node in graph:
        visit(node)


HOOK_CALLS = {"run_with_hooks", "hooks", "run_with_cache", "add_hook", "add_perma_hook"}


def test_hooks_are_registered_only_by_the_intervention_core():
    """Methods write interventions as values; only arithinterp/core runs them through hooks.
    A hook function (a parameter named `hook`) or a hook-registering call elsewhere fails."""
    files = [p for d in ("arithinterp", "apps", "probes") for p in (ROOT / d).rglob("*.py")
             if (PKG / "core") not in p.parents]
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in HOOK_CALLS:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.func.attr}(...)")
            if isinstance(node, ast.keyword) and node.arg in ("fwd_hooks", "bwd_hooks"):
                bad.append(f"{path.relative_to(ROOT)}:{node.value.lineno}: {node.arg}=")
            if isinstance(node, ast.FunctionDef | ast.Lambda) and "hook" in [
                    a.arg for a in node.args.args + node.args.kwonlyargs]:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: a hook function")
    assert not bad, "\n".join(bad)


def test_tests_mirror_the_package():
    tests = ROOT / "tests"
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if path.name == "__init__.py" or rel.parts[0] in ("zoo",):
            continue
        expected = tests.joinpath(*rel.parts[:-1], f"test_{path.stem}.py")
        assert expected.is_file(), f"{rel} has no {expected.relative_to(ROOT)}"


# ---- names spelled in one place ------------------------------------------------------------
ARTIFACT = re.compile(r"\.(parquet|safetensors|jsonl?|pt)\b|^(model|evaluate|localize|probes|"
                      r"fourier)/")
COMPONENT = re.compile(r"^L\d+(H\d+|\.(mlp|attn|resid))$|(^|[^\w{])L\{\}(H\{\}|\.|$)")
OWNERS = {PKG / "schema.py", PKG / "components.py"}


def _strings(tree: ast.AST):
    """(line, text) of every string literal and f-string template, docstrings excluded."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant):
            docstrings.add(id(node.body[0].value))
    parts_of_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            template = "".join(v.value if isinstance(v, ast.Constant) else "{}"
                               for v in node.values)
            parts_of_fstrings |= {id(v) for v in node.values}
            yield node.lineno, template
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings and id(node) not in parts_of_fstrings:
            yield node.lineno, node.value


def test_artifact_paths_and_component_names_live_in_schema_and_components():
    files = [p for d in ("arithinterp", "apps", "probes", "benchmarks")
             for p in (ROOT / d).rglob("*.py") if p not in OWNERS]
    bad = []
    for path in files:
        for line, text in _strings(ast.parse(path.read_text())):
            if ARTIFACT.search(text):
                bad.append(f"{path.relative_to(ROOT)}:{line}: artifact path {text!r}")
            if COMPONENT.search(text):
                bad.append(f"{path.relative_to(ROOT)}:{line}: component name {text!r}")
    assert not bad, "\n".join(bad)
