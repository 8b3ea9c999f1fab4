"""wsseg's Streamlit app: ``streamlit run app.py`` (``make app`` starts it on the demo project).

Pages live in ``pages/`` and are registered here with ``st.navigation``; the shared look and the
current-project state are in ``pages/common.py``, third-party components behind ``pages/components.py``.
"""

import streamlit as st

from pages.preload import preload

st.set_page_config(page_title="wsseg", page_icon="🧩", layout="wide")
preload()

PAGES = [
    st.Page("pages/project.py", title="Project", icon=":material/folder_open:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/photo_library:"),
    st.Page("pages/cams.py", title="CAMs and peaks", icon=":material/local_fire_department:"),
    st.Page("pages/proposals.py", title="Proposals and pseudo masks", icon=":material/layers:"),
    st.Page("pages/curate.py", title="Curate", icon=":material/task_alt:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/insights:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
]

st.navigation(PAGES).run()
