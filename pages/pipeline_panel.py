"""The pipeline panel of the Project page: every step's state (``wsseg.views.pipeline``), its settings
(chosen from the project's images, editable) and the buttons that run the next step, or every
remaining one, as background jobs (``wsseg.jobs.launch``). The states are an ``st.fragment`` that
rereads the project every ``POLL_SECONDS``; when a job ends, the whole page reruns so that its result
shows everywhere. The jobs go on when the browser is closed."""

from __future__ import annotations

from typing import Any

import streamlit as st

from wsseg.errors import WssegError
from wsseg.jobs import launch as jobs
from wsseg.jobs.table import JobRecord, list_jobs
from wsseg.store.project import Project
from wsseg.views.pipeline import (
    BY_KIND,
    STEPS,
    StepState,
    busy,
    default_settings,
    pipeline_state,
    plan,
    remaining,
    result_summary,
)

POLL_SECONDS = 2.0
STATE_LOOK = {
    "not run": (":material/radio_button_unchecked:", "gray"),
    "running": (":material/autorenew:", "blue"),
    "done": (":material/check_circle:", "green"),
    "failed": (":material/error:", "red"),
    "out of date": (":material/update:", "orange"),
}
#: Where a step's result is seen: page file and its title.
RESULT_PAGES = {
    "classifier": ("pages/cams.py", "CAMs and peaks"),
    "peaks": ("pages/cams.py", "CAMs and peaks"),
    "proposals": ("pages/proposals.py", "Proposals"),
    "pseudo_masks": ("pages/curate.py", "Curate"),
    "maskrcnn": ("pages/train.py", "Train"),
    "ple": ("pages/evaluate.py", "Evaluate"),
    "evaluate": ("pages/evaluate.py", "Evaluate"),
}
#: The settings shown per step: (option, label, lowest, highest) for numbers, (option, label, choices)
#: for a choice.
FIELDS: dict[str, list[tuple]] = {
    "classifier": [
        ("epochs", "Classifier epochs", 1, 1000),
        ("batch_size", "Classifier batch size", 1, 1024),
        ("size", "Classifier image size (px)", 32, 1024),
    ],
    "peaks": [("scale", "Peaks: enlarge images by", 0.25, 8.0)],
    "proposals": [("max_proposals", "Proposals kept per image", 1, 5000)],
    "pseudo_masks": [("strategy", "Pseudo-mask strategy", ("prm", "wise"))],
    "maskrcnn": [
        ("epochs", "Mask R-CNN epochs", 1, 1000),
        ("batch_size", "Mask R-CNN batch size", 1, 1024),
        ("image_size", "Mask R-CNN image size (px)", 32, 1024),
    ],
    "ple": [
        ("epochs", "Estimator epochs", 1, 1000),
        ("batch_size", "Estimator batch size", 1, 1024),
        ("size", "Estimator image size (px)", 32, 1024),
    ],
    "evaluate": [("split", "Evaluate on the split", None)],
}


def _splits(project: Project) -> list[str]:
    return ["all", *project.split_counts()]


def settings_form(project: Project) -> dict[str, dict[str, Any]]:
    """Every step's settings: the project's defaults (``default_settings``), as edited here."""
    defaults = default_settings(project)
    settings = {kind: dict(options) for kind, options in defaults.items()}
    n = project.count_images()
    with st.expander(f"Settings of each step (chosen from the project's {n} images; edit before running)"):
        for step in STEPS:
            fields = FIELDS[step.kind]
            columns = st.columns([1.3, *([1] * 3)])
            columns[0].markdown(f"**{step.title}**")
            for column, field in zip(columns[1:], fields, strict=False):
                option, label = field[0], field[1]
                value = defaults[step.kind].get(option)
                key = f"pipe_{step.kind}_{option}_{n}"  # new defaults once images are added
                if option == "split":
                    choices = _splits(project)
                    index = choices.index(value) if value in choices else 0
                    chosen = column.selectbox(label, choices, index=index, key=key)
                elif len(field) == 3:
                    chosen = column.selectbox(label, field[2], index=field[2].index(value), key=key)
                elif isinstance(value, float):
                    chosen = column.number_input(label, field[2], field[3], value, step=0.25, key=key)
                else:
                    chosen = int(column.number_input(label, field[2], field[3], int(value), key=key))
                settings[step.kind][option] = chosen
    return settings


def _start(root: str, kinds: list[str], settings: dict[str, dict[str, Any]]) -> None:
    project = Project(root)
    try:
        steps = plan(project, kinds, settings, list_jobs(project))
        if len(steps) == 1:
            job = jobs.start_job(project, steps[0]["kind"], steps[0]["options"])
        else:
            job = jobs.start_pipeline(project, steps)
        st.session_state["pipe_log_job"] = job
    except WssegError as error:
        st.session_state["pipe_error"] = str(error)


def _stop(root: str) -> None:
    project = Project(root)
    active = [j for j in list_jobs(project) if j.active and (j.kind == "pipeline" or j.kind in BY_KIND)]
    pipelines = [j for j in active if j.kind == "pipeline"]
    for job in pipelines or active:
        try:
            jobs.stop_job(project, job.id)
        except WssegError as error:
            st.session_state["pipe_error"] = str(error)


def _step_row(state: StepState) -> None:
    icon, colour = STATE_LOOK[state.state]
    title, status, detail, link = st.columns([1.4, 1.1, 4.2, 1.3], vertical_alignment="center")
    title.markdown(f"**{state.step.title}**")
    status.markdown(f":{colour}[{icon}] :{colour}[{state.state}]")
    if state.state == "running" and state.progress is not None:
        detail.progress(min(max(state.progress, 0.0), 1.0), text=state.message)
    elif state.state == "running":
        detail.caption(state.message)
    elif state.state == "failed":
        detail.markdown(f":red[{state.message}]")
    elif state.state == "out of date":
        detail.markdown(f"{result_summary(state.run)}  \n:orange[out of date: {state.message}]")
    elif state.state == "done":
        detail.markdown(result_summary(state.run))
    else:
        detail.caption("not run yet")
    if state.state in ("done", "out of date"):
        page, name = RESULT_PAGES[state.step.kind]
        link.page_link(page, label=name, icon=":material/arrow_forward:")


def _log(project: Project, all_jobs: list[JobRecord], states: list[StepState]) -> None:
    """The tail of the log of the job running a step (else the one just started, else the newest)."""
    running = [s.job for s in states if s.job is not None and s.job.active]
    wanted = st.session_state.get("pipe_log_job")
    job = running[0] if running else next((j for j in all_jobs if j.id == wanted), None)
    job = job or (all_jobs[0] if all_jobs else None)
    if job is None:
        return
    with st.expander(f"Log of job {job.id} ({jobs.TITLES.get(job.kind, job.kind)})"):
        st.code(jobs.log_tail(project, job.id) or "(nothing written yet)", language=None)
        st.caption(f"{jobs.log_path(project, job.id)} · {job.status} · {job.message}")


@st.fragment(run_every=POLL_SECONDS)
def live(root: str, settings: dict[str, dict[str, Any]]) -> None:
    """The steps' states, the buttons and the running job's log, reread from the project."""
    project = Project(root)
    all_jobs = list_jobs(project)
    states = pipeline_state(project, all_jobs)
    working = busy(states, all_jobs)
    seen = (working, tuple((s.state, s.run.id if s.run else None) for s in states))
    if st.session_state.get("pipe_seen", seen) != seen:
        st.session_state["pipe_seen"] = seen
        st.rerun()  # a step or job ended: every part of the page shows its result
    st.session_state["pipe_seen"] = seen
    for state in states:
        _step_row(state)
    todo = remaining(states)
    pipeline = next((j for j in all_jobs if j.active and j.kind == "pipeline"), None)
    if pipeline is not None:
        st.progress(
            min(max(pipeline.progress, 0.0), 1.0), text=f"Pipeline job {pipeline.id}: {pipeline.message}"
        )
    left, middle, right = st.columns(3)
    next_title = BY_KIND[todo[0]].title if todo else None
    left.button(
        "Every step is done"
        if not todo and not working
        else "Run the next step" + (f": {next_title}" if todo and not working else ""),
        key="pipe_next",
        type="primary",
        icon=":material/skip_next:",
        disabled=working or not todo,
        on_click=_start,
        args=(root, todo[:1], settings),
        width="stretch",
    )
    middle.button(
        f"Run every remaining step ({len(todo)})",
        key="pipe_all",
        icon=":material/fast_forward:",
        disabled=working or not todo,
        on_click=_start,
        args=(root, todo, settings),
        width="stretch",
    )
    right.button(
        "Stop",
        key="pipe_stop",
        icon=":material/stop:",
        disabled=not working,
        on_click=_stop,
        args=(root,),
        width="stretch",
    )
    if message := st.session_state.pop("pipe_error", None):
        st.error(message)
    _log(project, all_jobs, states)


def pipeline_panel(project: Project) -> None:
    st.caption(
        "Each step runs as a background job with the settings below: it goes on when you close the page. "
        "A step whose input has a newer run is out of date; running the remaining steps redoes it and "
        "everything after it."
    )
    live(str(project.root), settings_form(project))
