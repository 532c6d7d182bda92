"""Writes the API reference: one page per module of the package, found by walking it, so a
moved or new module needs no edit here."""

import ast
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "arithinterp"


def summary(path: Path) -> str:
    """The first sentence-paragraph of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


# mkdocstrings reads the package statically and sees no module of a folder without an
# __init__.py: such a folder would vanish from the reference, so it stops the build instead.
bare = sorted({p.parent.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")
               if not (p.parent / "__init__.py").exists()})
if bare:
    raise SystemExit(f"no __init__.py in {', '.join(bare)}: the API reference cannot show them")

nav = mkdocs_gen_files.Nav()
rows = []
for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__main__":
        continue
    page = Path(*parts).with_suffix(".md")
    if parts[-1] == "__init__":
        parts = parts[:-1]
        page = page.with_name("index.md")
    name = ".".join(parts)
    nav[parts] = page.as_posix()
    rows.append(f"| [`{name}`]({page.as_posix()}) | {summary(path)} |")
    with mkdocs_gen_files.open(Path("reference", page), "w") as out:
        out.write(f"::: {name}\n")
    mkdocs_gen_files.set_edit_path(Path("reference", page), path.relative_to(ROOT))

with mkdocs_gen_files.open("reference/index.md", "w") as out:
    out.write("# API reference\n\nEvery module of the package, with what it owns (its docstring's "
              "first paragraph); the pages are generated from the package tree and its "
              "docstrings.\n\n| module | what it owns |\n|---|---|\n")
    out.write("\n".join(rows) + "\n")

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as out:
    out.write("* [Overview](index.md)\n")
    out.writelines(nav.build_literate_nav())
