"""Puts the notebooks, with their committed outputs, into the site. A Plotly figure is stored
as Plotly's JSON output, which Jupyter draws but a static page cannot: each gets an HTML
rendering beside it (drawn by the plotly.js this script copies in, loaded by
overrides/main.html on notebook pages). A notebook whose metadata says its outputs are from
the smoke size (`"arithinterp": {"outputs": "smoke"}`) says so under its title."""

import json
from pathlib import Path

import mkdocs_gen_files
import plotly.io as pio
from plotly.offline import get_plotlyjs

ROOT = Path(__file__).resolve().parents[1]
PLOTLY = "application/vnd.plotly.v1+json"

# Shown under the title of a notebook whose committed outputs are from its smoke size.
SMOKE_NOTE = (
    "> **These outputs are from a smoke-size run** (`ARITHINTERP_SMOKE=1`, as `make test` runs "
    "it): the full size took too long for the run that recorded these pages, so the numbers "
    "here only show that the code runs. The full-size results are in the findings; the "
    "notebooks page says which notebook ran at which size.")

for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
    notebook = json.loads(path.read_text())
    if notebook["metadata"].get("arithinterp", {}).get("outputs") == "smoke":
        notebook["cells"].insert(1, {"cell_type": "markdown", "metadata": {},
                                     "source": SMOKE_NOTE})
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
