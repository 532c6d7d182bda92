"""arithinterp explorer: browse run directories (never retrains).

    streamlit run apps/explorer.py -- --runs-dir runs
    ARITHINTERP_RUNS_DIR=runs streamlit run apps/explorer.py

The entry script is the frame: page config, the run picker in the sidebar (shared by all
pages, kept in ``?run=NAME``) and the navigation; each view lives in ``views/``.
"""

import streamlit as st

import common

st.set_page_config(page_title="arithinterp explorer", page_icon="🧮", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon="📋", url_path="overview", default=True),
    st.Page("views/patching.py", title="Patching", icon="🩹", url_path="patching"),
    st.Page("views/attribution.py", title="Attribution", icon="🧾", url_path="attribution"),
    st.Page("views/attention.py", title="Attention", icon="👀", url_path="attention"),
    st.Page("views/probes.py", title="Probes", icon="🔬", url_path="probes"),
    st.Page("views/playground.py", title="Playground", icon="🧪", url_path="playground"),
]

page = st.navigation(PAGES)
st.sidebar.title("arithinterp")
common.pick_run()
page.run()
