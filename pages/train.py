"""Train page: start, stop and resume training as a background process, watch it live, compare runs.

A job is a separate ``python -m wsseg train-* --job ID`` process (``wsseg.jobs.launch``; never a thread of
the app) that writes its progress and loss curve into the project's ``jobs`` table; the live panel is
an ``st.fragment`` that rereads that row every ``POLL_SECONDS``. Closing the browser does not stop a
job, and any session on the project sees it; the jobs the Project page's pipeline panel starts are
listed too. A new run gets a new name by default (``classifier-2`` when ``classifier`` exists); training
over an existing run must be confirmed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from pages.common import current_project, show_error
from wsseg.curation.export import is_curated
from wsseg.errors import WssegError
from wsseg.jobs import launch as jobs
from wsseg.jobs.runner import RESUMABLE
from wsseg.jobs.table import JobRecord, list_jobs
from wsseg.models.backbones import cached_weight_names
from wsseg.stages.classifier_summary import never_predicted_warning, summary_rows
from wsseg.stages.common import next_run_name, run_exists
from wsseg.stages.make_pseudo_masks import STAGE as PSEUDO_STAGE
from wsseg.store.project import Project
from wsseg.store.weights import WEIGHTS_DIR, weight_files
from wsseg.views.overlay import display_scale, enlarge, jpeg_bytes
from wsseg.views.run_compare import TRAINED_STAGES, compare_table, finished_runs, through_model

POLL_SECONDS = 1.5
PICTURE = 400  # pixels: the width of each compared picture
# The command line's defaults: (epochs, batch size, learning rate).
DEFAULTS = {"classifier": (30, 32, 3e-3), "maskrcnn": (12, 8, 2e-3), "ple": (10, 16, 3e-3)}
BACKBONE_CHOICES = {
    "classifier": ["small", "mobilenet_v2", "mobilenet_v3", "resnet18", "resnet50"],
    "ple": ["small", "mobilenet_v2", "mobilenet_v3", "resnet18", "resnet50"],
    "maskrcnn": ["mobilenet_v3", "mobilenet_v2", "resnet50", "small", "maskrcnn_resnet50_fpn_v2"],
}
SOURCES = {
    "curated": "curated masks (accepted or edited): retrain",
    "pseudo": "the newest pseudo-masks run's masks not rejected",
    "truth": "ground truth (the fully-supervised upper bound)",
}


def _curated_count(project: Project) -> tuple[int | None, int]:
    """(newest finished pseudo-masks run, its number of curated masks)."""
    run = project.latest_run(PSEUDO_STAGE)
    if run is None:
        return None, 0
    return run.id, sum(is_curated(m) for m in project.pseudo_masks(run_id=run.id))


def _estimator_runs(project: Project) -> list[str]:
    """Names of finished pixel-label estimator runs trained without ground truth, newest first."""
    names: list[str] = []
    for run in project.runs("ple"):
        name = run.config.get("name")
        if run.status == "done" and not run.config.get("full") and name and name not in names:
            names.append(name)
    return names


def backbone_form(project: Project, stage: str, from_classifier: bool) -> dict[str, Any]:
    """The backbone and its pretrained start (torchvision weights in torch's cache, or a file in the
    project's ``weights/`` folder); returns the options to add (none: the command's defaults)."""
    if from_classifier:
        return {}  # the classifier's own layers are the start: its backbone, no other weights
    with st.expander("Backbone and pretrained start"):
        choices = BACKBONE_CHOICES[stage]
        backbone = st.selectbox("Backbone", choices, key=f"train_backbone_{stage}")
        files = [p.relative_to(project.root).as_posix() for p in weight_files(project)]
        starts = (
            ["none (from scratch)", *cached_weight_names(backbone), *files] if backbone != "small" else []
        )
        weights = st.selectbox("Start from", starts, key=f"train_weights_{stage}") if starts else None
        st.caption(
            "Pretrained weights: torchvision's (only those already in torch's cache: nothing is downloaded) "
            f"or a torchvision-format weights file put in the project's `{WEIGHTS_DIR}/` folder. The small "
            "backbone trains from scratch."
            + (" A pretrained Mask R-CNN backbone keeps its BatchNorm frozen." if stage == "maskrcnn" else "")
        )
        frozen = (
            st.checkbox(
                "Freeze the pretrained backbone (train only the head)",
                key="train_frozen_classifier",
                help="Its features stay ImageNet's: from a few dozen photos they place peaks on the objects "
                "about twice as often, at the cost of tag accuracy (docs/benchmark.md, COCO photos).",
            )
            if stage == "classifier" and weights and not weights.startswith("none")
            else False
        )
    options: dict[str, Any] = {"backbone": backbone}
    if weights and not weights.startswith("none"):
        options["weights"] = weights
    if frozen:
        options["frozen_backbone"] = True
    return options


def start_form(project: Project) -> None:
    """Stage and settings, and the Start button."""
    top = st.columns([2, 2, 1, 1, 1.4])
    stage = top[0].selectbox("Stage", list(TRAINED_STAGES), format_func=TRAINED_STAGES.get, key="train_stage")
    epochs, batch, lr = DEFAULTS[stage]
    source = None
    if stage == "maskrcnn":
        run_id, curated = _curated_count(project)
        source = st.radio(
            "Training masks",
            list(SOURCES),
            format_func=lambda s: SOURCES[s]
            + (f" · {curated} in pseudo-masks run {run_id}" if s == "curated" and run_id else ""),
            key="train_source",
            horizontal=True,
        )
    extra: dict[str, object] = {}
    if stage == "ple":
        rounds = _estimator_runs(project)
        labels = st.radio(
            "Training labels",
            ["tags", "round", "truth"],
            format_func=lambda s: {
                "tags": "tags: the pixel-label estimator",
                "round": "self-training round on a trained estimator's refined predictions (tags only)",
                "truth": "ground-truth pixels (the fully-supervised upper bound)",
            }[s],
            key="train_ple_labels",
            horizontal=True,
        )
        if labels == "round":
            if not rounds:
                st.info("No finished estimator run yet: train one on the tags first.")
                return
            extra["labels_from"] = st.selectbox("Labels from", rounds, key="train_ple_from")
        elif labels == "truth":
            extra["full"] = True
    classifier = project.latest_run("classifier")
    small = classifier is not None and classifier.config.get("model", {}).get("backbone") == "small"
    if stage == "ple" and classifier is not None or stage == "maskrcnn" and small:
        what = "backbone" if stage == "ple" else "layers (a small-backbone Mask R-CNN)"
        if st.checkbox(
            f"Start from the {what} of classifier {classifier.config.get('name', 'classifier')!r}",
            value=True,
            key=f"train_{stage}_init",
        ):
            extra["init"] = classifier.config.get("name", "classifier")
    extra.update(backbone_form(project, stage, "init" in extra))
    base = "maskrcnn-curated" if source == "curated" else stage
    key = f"train_name_{base}"
    if st.session_state.pop("train_name_reset", False):
        st.session_state.pop(key, None)  # a job just took the name: offer the next free one
    default_name = next_run_name(project, base, jobs.training_names(project))
    name = top[1].text_input("Run name (checkpoints/<name>/)", default_name, key=key).strip()
    replace = False
    if jobs.NAME.fullmatch(name) and run_exists(project, name):
        st.warning(
            f"A run named {name!r} exists (checkpoints/{name}/). Starting replaces its checkpoint; "
            f"choose a new name (such as {next_run_name(project, name)}) to keep it."
        )
        replace = st.checkbox(f"Replace the run {name!r}", key=f"train_replace_{name}")
    options = {
        "name": name,
        "epochs": int(top[2].number_input("Epochs", 1, 1000, epochs, key=f"train_epochs_{stage}")),
        "batch_size": int(top[3].number_input("Batch size", 1, 1024, batch, key=f"train_batch_{stage}")),
        "lr": float(
            top[4].number_input(
                "Learning rate", 1e-6, 1.0, lr, format="%.4f", step=1e-4, key=f"train_lr_{stage}"
            )
        ),
    }
    if replace:
        options["replace"] = True
    label = "Retrain on curated masks" if source == "curated" else "Start training"
    blocked = jobs.NAME.fullmatch(name) is not None and run_exists(project, name) and not replace
    if st.button(label, type="primary", key="train_start", icon=":material/play_arrow:", disabled=blocked):
        try:
            if source == "curated":
                job = jobs.retrain_on_curated(project, {**options, **extra})
            else:
                chosen = {k: v for k, v in extra.items() if v is not None}
                job = jobs.start_job(
                    project, stage, {**options, **chosen, **({"source": source} if source else {})}
                )
            st.session_state["train_job"] = job
            st.session_state["train_name_reset"] = True
            st.toast(f"Job {job} started")
        except WssegError as error:
            show_error(error)


def _job_label(job: JobRecord) -> str:
    name = f" · {job.name}" if job.kind in RESUMABLE else ""
    return f"job {job.id} · {jobs.TITLES.get(job.kind, job.kind)}{name} · {job.status}"


def loss_chart(job: JobRecord) -> go.Figure:
    """Per-step total loss (x in epochs) and each epoch's mean."""
    steps = max(int(job.metrics.get("steps", 1)), 1)
    curve = job.metrics.get("curve", [])
    epochs = job.metrics.get("epochs", [])
    fig = go.Figure()
    fig.add_scatter(
        x=[p[0] / steps for p in curve], y=[p[1] for p in curve], mode="lines", name="step", opacity=0.6
    )
    means = [sum(v for k, v in e.items() if k != "epoch") for e in epochs]
    fig.add_scatter(x=[e["epoch"] for e in epochs], y=means, mode="lines+markers", name="epoch mean")
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="epoch",
        yaxis_title="total loss",
        title=f"Loss of job {job.id}",
        legend=dict(orientation="h", y=1.1, x=1, xanchor="right"),
    )
    return fig


def learnt(project: Project, job: JobRecord) -> None:
    """What a finished classifier job learnt, per class (its run's ``class_summary``), with a warning
    naming the classes it never predicts."""
    run = next((r for r in project.runs("classifier") if r.id == job.run_id), None)
    summary = run.metrics.get("class_summary") if run is not None else None
    if summary is None:
        return
    st.markdown(f"**What the classifier learnt, per class** ({summary['images']} {summary['split']} images)")
    if warning := never_predicted_warning(summary):
        st.warning(warning)
    st.dataframe(summary_rows(summary), hide_index=True, width="stretch", key="train_learnt")


def _control(project: Project, job: JobRecord) -> None:
    try:
        if job.active:
            jobs.stop_job(project, job.id)
        else:
            jobs.resume_job(project, job.id)
    except WssegError as error:
        st.session_state["train_error"] = str(error)


@st.fragment(run_every=POLL_SECONDS)
def live(root: str) -> None:
    """The jobs, the chosen one's progress bar, stop/resume and loss curve, reread from the database."""
    project = Project(root)
    all_jobs = list_jobs(project)
    if not all_jobs:
        st.info("No job yet: start a training above, or the pipeline on the Project page.")
        return
    by_id = {j.id: j for j in all_jobs}
    wanted = st.session_state.get("train_job")
    if wanted in by_id and st.session_state.get("train_view") != wanted:
        st.session_state["train_view"] = wanted  # a job just started is shown
        st.session_state["train_job"] = None
    if st.session_state.get("train_view") not in by_id:
        st.session_state["train_view"] = all_jobs[0].id
    left, right = st.columns([4, 1])
    job = by_id[
        left.selectbox("Job", list(by_id), format_func=lambda i: _job_label(by_id[i]), key="train_view")
    ]
    with right:
        st.write("")
        if job.active:
            st.button(
                "Stop", key="train_stop", icon=":material/stop:", on_click=_control, args=(project, job)
            )
        elif jobs.can_resume(job):
            st.button(
                "Resume", key="train_resume", icon=":material/replay:", on_click=_control, args=(project, job)
            )
    if message := st.session_state.pop("train_error", None):
        st.warning(message)
    st.progress(job.progress, text=f"{job.status} · {job.progress:.0%} · {job.message or '…'}")
    if job.metrics.get("curve"):
        st.plotly_chart(loss_chart(job), key="train_chart")
    if job.kind == "classifier":
        learnt(project, job)
    with st.expander(f"Log of job {job.id}"):
        st.code(jobs.log_tail(project, job.id) or "(nothing written yet)", language=None)
        st.caption(f"`{jobs.log_path(project, job.id)}` · options: {job.args}")
    st.dataframe(
        [
            {
                "job": j.id,
                "stage": jobs.TITLES.get(j.kind, j.kind),
                "name": j.name if j.kind in RESUMABLE else "",
                "status": j.status,
                "progress": round(j.progress, 3),
                "message": j.message,
                "run": j.run_id,
                "updated": dt.datetime.fromtimestamp(j.updated_at).strftime("%H:%M:%S"),
            }
            for j in all_jobs
        ],
        hide_index=True,
        width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
    )


@st.cache_data(max_entries=64, show_spinner="Running the image through the model…")
def _view(root: str, run_id: int, image_id: int, stamp: float) -> tuple[bytes, str] | None:
    """JPEG and caption of one image through one run's model; ``stamp`` (checkpoint mtime) invalidates."""
    project = Project(root)
    run = next(r for r in project.runs() if r.id == run_id)
    view = through_model(project, run, project.image(image_id))
    if view is None:
        return None
    return jpeg_bytes(enlarge(view.picture, display_scale(view.picture.shape[:2], PICTURE))), view.caption


def compare(project: Project) -> None:
    """Two finished runs of one stage: settings and metrics, and the same image through both."""
    stage = st.selectbox("Stage", list(TRAINED_STAGES), format_func=TRAINED_STAGES.get, key="cmp_stage")
    runs = finished_runs(project, stage)
    if len(runs) < 2:
        st.info(f"Two finished {TRAINED_STAGES[stage]} runs are needed to compare ({len(runs)} so far).")
        return
    by_id = {r.id: r for r in runs}

    def label(i: int) -> str:
        r = by_id[i]
        return f"run {i} · {r.config.get('name')} · {r.status} · {dt.datetime.fromtimestamp(r.started_at):%m-%d %H:%M}"

    cols = st.columns(2)
    a = by_id[cols[0].selectbox("Run A", list(by_id), index=0, format_func=label, key="cmp_a")]
    b = by_id[cols[1].selectbox("Run B", list(by_id), index=1, format_func=label, key="cmp_b")]
    rows = compare_table(a, b)
    only = st.toggle("Only what differs", value=True, key="cmp_only")
    st.dataframe([r for r in rows if r["differs"] or not only], hide_index=True, width="stretch")
    n = project.count_images()
    k = st.columns(3)[0].number_input(f"Image (1 to {n})", 1, max(n, 1), 1, key="cmp_image")
    record = project.images(offset=int(k) - 1, limit=1)[0]
    for col, run in zip(st.columns(2), (a, b), strict=True):
        path = project.root / "checkpoints" / str(run.config.get("name")) / "last.pt"
        try:
            shown = _view(
                str(project.root), run.id, record.id, path.stat().st_mtime if path.exists() else 0.0
            )
        except WssegError as error:
            col.error(str(error))
            continue
        if shown is None:
            col.info(
                f"Run {run.id}'s model is gone: a later run of the name {run.config.get('name')!r} replaced it."
            )
        else:
            col.image(shown[0], caption=f"run {run.id}: {shown[1]}", width=PICTURE)


st.title("Train")
project = current_project()
if project is None:
    st.stop()
st.caption(
    "Training runs as a separate background process: it goes on when you close the page, Stop ends it "
    "and keeps the last finished epoch's checkpoint, Resume continues from there (a stopped peaks, proposals "
    "or pseudo-masks step resumes its run: the images it finished are kept)."
)
st.subheader("Start a training job")
start_form(project)
st.subheader("Jobs")
live(str(project.root))
st.subheader("Compare two runs")
compare(project)
