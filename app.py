"""wsseg's Streamlit app: ``streamlit run app.py`` (``make app`` starts it on the demo project).

Pages live in ``pages/`` and are registered here with ``st.navigation``; the shared look and the
current-project state are in ``pages/common.py``.
"""

import streamlit as st

st.set_page_config(page_title="wsseg", page_icon="🧩", layout="wide")

PAGES = [
    st.Page("pages/project.py", title="Project", icon="📁", default=True),
    st.Page("pages/curate.py", title="Curate", icon="✅"),
]

st.navigation(PAGES).run()
