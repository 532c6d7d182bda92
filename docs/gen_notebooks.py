"""Puts the notebooks, with their committed outputs, into the site. A Plotly figure is stored
as Plotly's JSON output, which Jupyter draws but a static page cannot: each gets an HTML
rendering beside it (drawn by the plotly.js this script copies in, loaded by
overrides/main.html on notebook pages)."""

import json
from pathlib import Path

import mkdocs_gen_files
import plotly.io as pio
from plotly.offline import get_plotlyjs

ROOT = Path(__file__).resolve().parents[1]
PLOTLY = "application/vnd.plotly.v1+json"

for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY in data and "text/html" not in data:
                data["text/html"] = pio.to_html(data[PLOTLY], include_plotlyjs=False,
                                                full_html=False, validate=False,
                                                default_height=450)
    target = Path("notebooks", path.name)
    with mkdocs_gen_files.open(target, "w") as out:
        json.dump(notebook, out)
    mkdocs_gen_files.set_edit_path(target, path.relative_to(ROOT))

with mkdocs_gen_files.open("assets/plotly.min.js", "w") as out:
    out.write(get_plotlyjs())
