"""Shared figure parts: the package's imports and unique labels."""

import ast
from pathlib import Path

from arithinterp import viz
from arithinterp.viz.common import token_labels, unique_labels


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


def test_duplicate_position_labels_are_made_unique():
    assert unique_labels(["1", "+", "1"]) == ["0:1", "1:+", "2:1"]
    assert token_labels(["<bos>", "1", "+", "1"], ["<bos>", "a0", "+", "b0"]) == \
        ["<bos>", "1 (a0)", "+", "1 (b0)"]
