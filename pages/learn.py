"""Learn page: a guided lesson on the demo data, from tags to masks, one step per stage.

Each step explains its stage in plain words, offers live controls, asks "what do you expect?" and,
on Reveal, shows the picture and says whether the guess came true and why (``wsseg.views.lesson`` judges it
from what the stage did on this image; the steps are drawn by ``pages/learn_steps.py``). The lesson runs
on its own small demo project (``WSSEG_LESSON``, default ``projects/lesson``, made on the first visit)
with the shipped classifier, Mask R-CNN and pixel-label estimator.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from pages import cached
from pages.common import keep_project_in_url, show_error
from pages.learn_steps import DRAW, Lesson, lesson_stamp, reset_lesson
from wsseg.demo.project import DEMO_CHECKPOINT
from wsseg.errors import WssegError
from wsseg.store.project import Project
from wsseg.views.lesson import STEPS
from wsseg.views.lesson_data import DEFAULT_IMAGE, create_lesson_project, image_truth, is_ready

LESSON_ROOT = Path(os.environ.get("WSSEG_LESSON", "projects/lesson"))


def _move(delta: int) -> None:
    st.session_state["learn_step"] = min(
        len(STEPS) - 1, max(0, st.session_state.get("learn_step", 0) + delta)
    )


st.title("Learn: from tags to masks")
keep_project_in_url()
root = Path(st.session_state.setdefault("lesson_root", str(LESSON_ROOT)))
project = Project(root) if Project.is_project(root) else None
if project is None or not is_ready(project):
    try:
        with st.spinner(
            "Preparing the lesson: demo images, the shipped classifier's peaks, proposals (once)…"
        ):
            project = create_lesson_project(root)
    except WssegError as error:
        show_error(error)
        st.stop()
    if not is_ready(project):
        st.info(
            f"The lesson needs the shipped demo classifier ({DEMO_CHECKPOINT}), which is missing. Make it "
            "with `python -m wsseg demo-checkpoint` (the full recipe: about 25 minutes on 2 CPU cores)."
        )
        st.stop()
records = project.images()
top = st.columns([2, 5, 1, 1])
number = top[0].number_input(
    f"Lesson image (1 to {len(records)})",
    1,
    len(records),
    min(DEFAULT_IMAGE, len(records)),
    key="learn_image",
)
index = top[1].selectbox("Step", range(len(STEPS)), format_func=lambda i: STEPS[i].title, key="learn_step")
top[2].button("← Back", on_click=_move, args=(-1,), disabled=index == 0, key="learn_back")
top[3].button("Next →", on_click=_move, args=(1,), disabled=index == len(STEPS) - 1, key="learn_next")
record = records[number - 1]
if st.session_state.get("learn_seen") != (index, number):  # moved on: every step asks afresh
    st.session_state["learn_seen"] = (index, number)
    reset_lesson([s.key for s in STEPS])
stamp = lesson_stamp(str(root))
lesson = Lesson(
    project=project,
    root=str(root),
    number=number,
    image_id=record.id,
    tags=record.tags,
    classes=project.classes(),
    truth=image_truth(project, record),
    maps=cached.maps(str(root), record.id, stamp),
    stamp=stamp,
)
current = STEPS[index]
st.header(current.title)
st.markdown(current.explanation)
DRAW[current.key](lesson, current)
