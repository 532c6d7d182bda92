"""arithinterp explorer: browse run directories (never retrains).

    streamlit run apps/explorer.py -- --runs-dir runs
    ARITHINTERP_RUNS_DIR=runs streamlit run apps/explorer.py

The entry script is the frame: page config, the run picker in the sidebar (shared by all
pages, kept in ``?run=NAME``) and the navigation; each view lives in ``views/``.
"""

import common
import streamlit as st

# (file, title, material icon); the url path of a page is its file's stem: /patching
VIEWS = [
    ("overview", "Overview", "dashboard"),
    ("patching", "Patching", "grid_on"),
    ("attribution", "Attribution", "bar_chart"),
    ("attention", "Attention", "visibility"),
    ("compare", "Compare runs", "compare_arrows"),
    ("neurons", "Neurons", "hub"),
    ("probes", "Probes", "science"),
    ("multiplication", "Multiplication", "close"),
    ("finetune", "Fine-tuning", "tune"),
    ("modular", "Modular", "autorenew"),
    ("sweeps", "Sweeps", "stacked_line_chart"),
    ("llm", "LLM", "psychology"),
    ("playground", "Playground", "calculate"),
]

st.set_page_config(page_title="arithinterp explorer", page_icon=":material/calculate:",
                   layout="wide")
PAGES = [st.Page(f"views/{stem}.py", title=title, icon=f":material/{icon}:", url_path=stem)
         for stem, title, icon in VIEWS]


def home() -> None:
    """The root address opens the first view at its own address, so every page, the first
    included, has a link that works (Streamlit serves its default page at "/" only)."""
    st.switch_page(PAGES[0], query_params=st.query_params.to_dict())


page = st.navigation([st.Page(home, title="Home", url_path="home", default=True,
                              visibility="hidden"), *PAGES])
st.sidebar.title("arithinterp")
common.pick_run()
page.run()
