"""Shared figure parts: the package's imports, unique labels and the clickable heatmap."""

import ast
from pathlib import Path

import numpy as np
import pytest

from arithinterp import viz
from arithinterp.viz.common import (
    CELLS,
    clickable_heatmap_figure,
    token_labels,
    unique_labels,
)

ROOT = Path(__file__).resolve().parents[2]


def test_viz_imports_only_data_and_plotting_libraries():
    for path in Path(viz.__file__).parent.glob("*.py"):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                # of the package, only the component names (a data type) and viz itself
                roots.add("components" if node.module == "arithinterp.components"
                          else "viz" if node.module.startswith("arithinterp.viz.")
                          else node.module.split(".")[0])
        assert roots <= {"__future__", "collections", "html", "json", "numpy", "pandas",
                         "plotly", "jaxtyping", "torch", "components", "viz"}, (path.name, roots)


def test_figure_builders_live_only_in_viz():
    builders = [f"{path.relative_to(ROOT)}: {node.name}"
                for folder in ("arithinterp", "apps", "probes", "benchmarks")
                for path in (ROOT / folder).rglob("*.py") if "viz" not in path.parts
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.FunctionDef) and node.name.endswith("_figure")]
    assert not builders, builders


def test_duplicate_position_labels_are_made_unique():
    assert unique_labels(["1", "+", "1"]) == ["0:1", "1:+", "2:1"]
    assert token_labels(["<bos>", "1", "+", "1"], ["<bos>", "a0", "+", "b0"]) == \
        ["<bos>", "1 (a0)", "+", "1 (b0)"]


def test_a_clickable_heatmap_holds_each_finite_cell_s_keys_and_value():
    z = np.array([[0.5, np.nan], [-1.0, 2.0]])
    keys = [[("r0", "c0"), ("r0", "c1")], [("r1", "c0"), ("r1", "c1")]]
    fig = clickable_heatmap_figure(z, ["x0", "x1"], ["y0", "y1"], keys=keys, title="t",
                                   x_title="x", y_title="y", color_title="v")
    (cells,) = [t for t in fig.data if t.meta == CELLS]
    assert [list(c) for c in cells.customdata] == [["r0", "c0", 0.5], ["r1", "c0", -1.0],
                                                   ["r1", "c1", 2.0]]  # the NaN cell: none
    assert list(cells.x) == ["x0", "x0", "x1"] and list(cells.y) == ["y0", "y1", "y1"]
    with pytest.raises(ValueError, match="labels give"):
        clickable_heatmap_figure(z, ["x0"], ["y0", "y1"], keys=keys, title="t", x_title="x",
                                 y_title="y", color_title="v")
