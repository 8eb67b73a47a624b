"""PoE-MVAE digits: draw, speak, combine, generate, explore the latent and read the report."""

import streamlit as st

from mvae import ui

st.set_page_config(page_title="PoE-MVAE: digits you can draw and say", page_icon=":material/draw:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
    st.Page("pages/speak.py", title="Speak", icon=":material/mic:"),
    st.Page("pages/combine.py", title="Combine", icon=":material/join_inner:"),
    st.Page("pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
    st.Page("pages/latent.py", title="Latent explorer", icon=":material/explore:"),
    st.Page("pages/report.py", title="Report", icon=":material/analytics:"),
]

page = st.navigation(PAGES)
with ui.guard():
    page.run()
