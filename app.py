"""PoE-MVAE digits: draw, speak, combine, generate, explore the latent and read the report."""

from pathlib import Path

import streamlit as st

# A file served by this server, not a ":material/…:" icon: the browser fetches those from Google's font CDN, and
# an offline Space logged a failed request for it on every page (tests/test_browser.py checks for none).
FAVICON = Path(__file__).resolve().parent / "webapp" / "static" / "favicon.png"
st.set_page_config(page_title="PoE-MVAE: digits you can draw and say", page_icon=str(FAVICON), layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
    st.Page("pages/speak.py", title="Speak", icon=":material/mic:"),
    st.Page("pages/combine.py", title="Combine", icon=":material/join_inner:"),
    st.Page("pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
    st.Page("pages/latent.py", title="Latent explorer", icon=":material/explore:"),
    st.Page("pages/report.py", title="Report", icon=":material/analytics:"),
]

# The navigation goes out before the library is imported: the first run in a fresh server imports plotly and
# the model, and until st.navigation runs Streamlit shows its own menu of the pages/ file names.
page = st.navigation(PAGES)
with st.spinner("Starting up: loading the model…"):
    # Every page's modules, plotly among them, load here under the spinner; the pages then find them loaded.
    from webapp import inputs, show, state  # noqa: F401

with state.guard():
    page.run()
