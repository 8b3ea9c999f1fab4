"""Evaluate page: the project's runs scored against its ground truth (mask mAP at IoU 0.25/0.5/0.75,
pointing accuracy, counting error, mIoU, per class), a gallery of the worst images, and one image's
ground truth, pseudo masks and model prediction side by side with a difference overlay.

Everything is computed by ``wsseg.views.evaluate`` from the runs the command line wrote; the figures are
cached per run (``st.cache_data``, keyed on the run and on what it reads), the pictures composited in
numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.common import current_project, show_error
from pages.curate_draw import overlay
from pages.hints import missing_step
from wsseg.errors import WssegError
from wsseg.methods.mask_map import IOU_THRESHOLDS, threshold_key
from wsseg.store.project import Project, RunRecord
from wsseg.structures import Instances
from wsseg.views.evaluate import (
    DIFF_COLOURS,
    FN,
    FP,
    TP,
    ImageComparison,
    InstanceScores,
    class_colour,
    compare_images,
    difference_codes,
    difference_overlay,
    dimmed,
    eval_runs,
    find_run,
    has_ground_truth,
    peak_scores,
    ple_scores,
    run_stamp,
    score_run,
    score_threshold,
    worst_images,
)
from wsseg.views.overlay import display_scale, enlarge, jpeg_bytes

SOURCES = {"pseudo": "pseudo masks", "model": "model prediction"}


@dataclass(frozen=True)
class Scored:
    """The instance sources scored, by kind ("pseudo", "model"): their run ids, score thresholds and
    covered image ids, and ``stamp``, what the cached pictures are keyed on."""

    ids: dict[str, int]
    threshold: dict[str, float]
    covered: dict[str, set[int]]
    stamp: tuple


@st.cache_data(max_entries=32, show_spinner="Scoring the run against the ground truth…")
def _scores(root: str, run_id: int, stamp: tuple) -> InstanceScores:
    project = Project(root)
    return score_run(project, find_run(project, run_id))


@st.cache_data(max_entries=32, show_spinner="Scoring the peaks…")
def _peaks(root: str, run_id: int, stamp: tuple) -> dict[str, Any]:
    project = Project(root)
    return peak_scores(project, find_run(project, run_id))


@st.cache_data(max_entries=32, show_spinner="Scoring the label maps…")
def _ple(root: str, run_id: int, stamp: tuple) -> dict[str, Any]:
    project = Project(root)
    return ple_scores(project, find_run(project, run_id))


@st.cache_data(max_entries=64, show_spinner=False)
def _compare(
    root: str, image_ids: tuple[int, ...], pseudo: int | None, model: int | None, stamp: tuple
) -> list[ImageComparison]:
    return compare_images(Project(root), list(image_ids), pseudo, model)


def _commands(project: Project) -> dict[str, str]:
    """The pipeline steps (Project page) that make each kind of run."""
    return {
        "pseudo": "run the pipeline up to its Pseudo masks step (Project page)",
        "model": "run the pipeline's Mask R-CNN and Evaluation steps (Project page)",
        "ple": "run the pipeline's Pixel-label estimator step (Project page)",
    }


def tag_scores(project: Project) -> None:
    """A project without ground truth: its evaluation runs' agreement with the tags, newest first."""
    rows = [
        {
            "run": r.id,
            "model": r.config.get("model"),
            "split": r.config.get("split") or "all",
            "images": r.metrics.get("images"),
            "tag precision": r.metrics.get("tag_precision"),
            "tag recall": r.metrics.get("tag_recall"),
            "instances per image": r.metrics.get("instances_per_image"),
        }
        for r in project.runs("evaluate")
        if r.status == "done" and r.metrics.get("against") == "tags"
    ]
    if rows:
        st.markdown("**Evaluation against the tags**: how the classes each model finds agree with the tags.")
        st.dataframe(rows, hide_index=True, width="stretch")


def _split_name(config: dict[str, Any]) -> str:
    return f"split {config['split']}" if config.get("split") else "every split"


def _run_label(run: RunRecord) -> str:
    config, metrics = run.config, run.metrics
    if run.stage == "pseudo_masks":
        return (
            f"run {run.id} · {config.get('retrieval', {}).get('strategy', '?')} · "
            f"{metrics.get('masks', '?')} masks on {metrics.get('images', '?')} images"
        )
    if run.stage == "evaluate":
        return f"run {run.id} · {config.get('model')} on {_split_name(config)}"
    return f"run {run.id} · {config.get('name', '')} on {_split_name(config)}"


def _pick_run(column: Any, label: str, runs: list[RunRecord], key: str) -> RunRecord | None:
    if not runs:
        return None
    by_id = {r.id: r for r in runs}
    chosen = column.selectbox(label, list(by_id), format_func=lambda k: _run_label(by_id[k]), key=key)
    return by_id[chosen]


def _show(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _class_chart(title: str, classes: list[str], series: dict[str, list[float]], y_title: str) -> go.Figure:
    """Grouped bars: one bar per class for each named series (NaN bars left out)."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_bar(name=name, x=classes, y=[None if math.isnan(v) else v for v in values])
    fig.update_layout(
        barmode="group",
        height=280,
        margin=dict(l=10, r=10, t=40, b=10),
        title=title,
        yaxis=dict(range=[0, 1], title=y_title),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def _instances_picture(image: np.ndarray, inst: Instances, scale: int) -> np.ndarray:
    """HxWx3 uint8 enlarged: the image dimmed to grey, each instance tinted in its class's colour and
    outlined, the best score on top."""
    picture = dimmed(image)
    for k in np.argsort(np.asarray(inst.scores, np.float64), kind="stable"):
        picture = overlay(picture, inst.masks[k], class_colour(inst.labels[k]), alpha=0.7)
    return enlarge(picture, scale)


def _difference(comparison: ImageComparison, source: str) -> np.ndarray | None:
    other = comparison.pseudo if source == "pseudo" else comparison.predicted
    if other is None:
        return None
    return difference_overlay(comparison.image, difference_codes(comparison.truth, other))


def metrics_section(
    project: Project,
    classes: list[str],
    scores: dict[str, tuple[RunRecord, InstanceScores]],
    peaks_run: RunRecord | None,
    ple_run: RunRecord | None,
) -> None:
    """One table of every source's figures (a blank cell: not defined for that source), and the per-class
    values as two bar charts."""
    st.subheader("Metrics against the ground truth")
    rows: list[dict[str, Any]] = []
    for source, (run, s) in scores.items():
        rows.append(
            {
                "source": f"{SOURCES[source]} (run {run.id})",
                "images": len(s.per_image),
                **{f"mAP@{t:g}": s.maps[threshold_key(t)] for t in IOU_THRESHOLDS},
                "pointing accuracy": s.pointing_accuracy,
                "count MAE": s.count_mae,
                "mean image score": float(np.mean(list(s.per_image.values()))) if s.per_image else math.nan,
            }
        )
    notes = [
        "Mask mAP with pycocotools (101-point precision, classes without true instances left out). Pointing "
        "accuracy of masks: the best mask of each present class has its most interior pixel inside a true "
        "instance of the class; of peaks: a peak of a tagged class lies inside a true instance of it. Image "
        "score: mean over the true instances of the best IoU with a mask of the same class."
    ]
    peak_figures = ple_figures = None
    if peaks_run is not None:
        try:
            peak_figures = _peaks(str(project.root), peaks_run.id, run_stamp(project, peaks_run))
        except WssegError as error:
            show_error(error)
        else:
            rows.append(
                {
                    "source": f"peaks (run {peaks_run.id})",
                    "images": peak_figures["images"],
                    "pointing accuracy": peak_figures["pointing_accuracy"],
                }
            )
            notes.append(f"Instance recall of the peaks: {_show(peak_figures['instance_recall'])}.")
    if ple_run is not None:
        ple_figures = _ple(str(project.root), ple_run.id, run_stamp(project, ple_run))
        rows.append(
            {
                "source": f"pixel-label estimator (run {ple_run.id})",
                "images": ple_figures["images"],
                "mIoU": ple_figures["miou"],
            }
        )
    else:
        notes.append(f"No pixel-label estimator run for an mIoU: {_commands(project)['ple']}.")
    # A metric that does not apply to a source (mIoU of peaks, mAP of label maps) shows as "-", not as
    # Streamlit's "None" (it ignores a Styler's na_rep): the metric cells are text with 4 decimals.
    table = pd.DataFrame(rows)
    for column in table.columns.drop(["source", "images"]):
        table[column] = [_show(v, 4) for v in table[column]]
    st.dataframe(table, hide_index=True, key="ev_table")
    st.caption(" ".join(notes))

    charts = st.columns(2)
    if scores:
        iou = charts[0].radio(
            "AP per class at IoU", IOU_THRESHOLDS, index=1, horizontal=True, key="ev_iou", format_func=str
        )
        series = {
            f"{SOURCES[k]} (run {r.id})": s.per_class[threshold_key(iou)] for k, (r, s) in scores.items()
        }
        charts[0].plotly_chart(
            _class_chart(f"Mask AP per class at IoU {iou:g}", classes, series, "AP"), key="ev_ap_chart"
        )
    other: dict[str, list[float]] = {}
    if peak_figures is not None:
        other[f"peak pointing accuracy (run {peaks_run.id})"] = list(peak_figures["per_class"])
    if ple_figures is not None:
        other[f"PLE IoU (run {ple_run.id})"] = [ple_figures["iou"].get(c, math.nan) for c in classes]
    if other:
        charts[1].plotly_chart(
            _class_chart("Per class: pointing accuracy and semantic IoU", classes, other, "score"),
            key="ev_class_chart",
        )


def gallery(project: Project, ids: list[int], per_image: dict[int, float], runs: Scored, source: str) -> None:
    """The worst images of ``source`` as difference overlays; a button shows one below."""
    st.subheader(f"Worst images ({SOURCES[source]})")
    count = st.slider("Images in the gallery", 4, 16, 8, 4, key="ev_worst")
    shown = ids[:count]
    comparisons = _compare(
        str(project.root), tuple(shown), runs.ids.get("pseudo"), runs.ids.get("model"), runs.stamp
    )
    for row_start in range(0, len(comparisons), 4):
        for column, comparison in zip(st.columns(4), comparisons[row_start : row_start + 4], strict=False):
            picture = _difference(comparison, source)
            scale = display_scale(comparison.image.shape[:2], 200)
            record = comparison.record
            column.image(
                jpeg_bytes(enlarge(picture, scale)),
                caption=f"{record.filename} · score {per_image[record.id]:.2f}",
                width="stretch",
            )
            column.button(
                "Compare",
                key=f"ev_pick_{record.id}",
                on_click=st.session_state.update,
                kwargs={"ev_image": record.id},
            )


def side_by_side(
    project: Project, ids: list[int], per_image: dict[int, float], runs: Scored, source: str
) -> None:
    st.subheader("Ground truth, pseudo masks and prediction")
    if st.session_state.get("ev_image") not in ids or st.session_state.get("ev_image_source") != source:
        st.session_state["ev_image"] = ids[0]  # a new scoring source opens on its worst image
    st.session_state["ev_image_source"] = source
    names = {k: project.image(k).filename for k in ids}
    image_id = st.selectbox(
        f"Image (worst first, by the image score of the {SOURCES[source]})",
        ids,
        format_func=lambda k: f"{names[k]} · score {per_image[k]:.2f}",
        key="ev_image",
    )
    (comparison,) = _compare(
        str(project.root), (image_id,), runs.ids.get("pseudo"), runs.ids.get("model"), runs.stamp
    )
    scale = display_scale(comparison.image.shape[:2], 320)
    image_column, *columns = st.columns(5)
    image_column.markdown("**Image**")
    image_column.image(
        jpeg_bytes(enlarge(comparison.image, scale)), caption=comparison.record.filename, width="stretch"
    )
    columns[0].markdown("**Ground truth**")
    columns[0].image(
        jpeg_bytes(_instances_picture(comparison.image, comparison.truth, scale)),
        caption=f"{len(comparison.truth)} true instance(s) · tags: {', '.join(comparison.record.tags) or 'none'}",
        width="stretch",
    )
    commands = _commands(project)
    for column, kind, inst in (
        (columns[1], "pseudo", comparison.pseudo),
        (columns[2], "model", comparison.predicted),
    ):
        column.markdown(f"**{SOURCES[kind].capitalize()}**")
        if inst is None:
            column.info(f"No {SOURCES[kind]} run yet: {commands[kind]}.")
            continue
        covered = image_id in runs.covered[kind]
        column.image(
            jpeg_bytes(_instances_picture(comparison.image, inst, scale)),
            caption=f"{len(inst)} instance(s) from run {runs.ids[kind]}"
            + (f" scoring {runs.threshold[kind]:g} or more" if kind == "model" else "")
            + ("" if covered else " (the run did not cover this image)"),
            width="stretch",
        )
    columns[3].markdown("**Difference**")
    columns[3].image(
        jpeg_bytes(enlarge(_difference(comparison, source), scale)),
        caption=f"{SOURCES[source]} against the truth · image score {per_image[image_id]:.2f}",
        width="stretch",
    )
    classes = " · ".join(
        f"<span style='color:rgb{class_colour(c)}'>■</span> {name}"
        for c, name in enumerate(project.classes())
    )
    codes = " · ".join(
        f"<span style='color:rgb{DIFF_COLOURS[code]}'>■</span> {name}"
        for code, name in ((TP, "right class"), (FP, "false positive or wrong class"), (FN, "missed"))
    )
    st.caption(f"Masks by class: {classes}. Difference: {codes}.", unsafe_allow_html=True)


st.title("Evaluate")
project = current_project()
if project is None:
    st.stop()
commands = _commands(project)
if not has_ground_truth(project):
    st.info(
        "This project has no ground truth (no `ground_truth.json`), so masks cannot be scored: only how "
        "the classes a model finds agree with the tags. Data imported with its instance masks (COCO or VOC) "
        "brings ground truth; the demo project has it."
    )
    tag_scores(project)
    st.page_link(
        "pages/project.py",
        label="Run the Evaluation step from the pipeline panel (Project page)",
        icon=":material/play_circle:",
    )
    st.stop()
runs = eval_runs(project)
if runs.empty():
    missing_step(
        "No run to evaluate yet. Pseudo masks: "
        + commands["pseudo"]
        + ". A model's predictions: "
        + commands["model"]
        + ". Semantic masks: "
        + commands["ple"]
        + "."
    )
    st.stop()

choice = st.columns(3)
pseudo_run = _pick_run(choice[0], "Pseudo-mask run", runs.pseudo, "ev_pseudo_run")
model_run = _pick_run(choice[1], "Model predictions (evaluate run)", runs.models, "ev_model_run")
ple_run = _pick_run(choice[2], "Pixel-label estimator run", runs.ple, "ev_ple_run")
for column, kind, run in ((choice[0], "pseudo", pseudo_run), (choice[1], "model", model_run)):
    if run is None:
        column.caption(f"No {SOURCES[kind]} run yet: {commands[kind]}.")
peaks_run = next((r for r in runs.peaks if pseudo_run and r.id == pseudo_run.config.get("peaks_run")), None)
peaks_run = peaks_run or (runs.peaks[0] if runs.peaks else None)

scores: dict[str, tuple[RunRecord, InstanceScores]] = {}
for kind, run in (("pseudo", pseudo_run), ("model", model_run)):
    if run is None:
        continue
    try:
        scores[kind] = (run, _scores(str(project.root), run.id, run_stamp(project, run)))
    except WssegError as error:
        show_error(error)
classes = project.classes()
metrics_section(project, classes, scores, peaks_run, ple_run)

if not scores:
    st.info(
        "The gallery and the side-by-side view compare instance masks with the truth: make pseudo masks "
        f"({commands['pseudo']}) or a model's predictions ({commands['model']})."
    )
    st.stop()
source = st.radio(
    "Score the images by", list(scores), format_func=SOURCES.__getitem__, horizontal=True, key="ev_source"
)
per_image = scores[source][1].per_image
if not per_image:
    st.info(f"Run {scores[source][0].id} covers no image with ground truth.")
    st.stop()
ids = worst_images(per_image)
chosen = Scored(
    ids={kind: run.id for kind, (run, _) in scores.items()},
    threshold={kind: score_threshold(run) for kind, (run, _) in scores.items()},
    covered={kind: set(s.per_image) for kind, (_, s) in scores.items()},
    stamp=tuple(run_stamp(project, run) for run, _ in scores.values()),
)
gallery(project, ids, per_image, chosen, source)
side_by_side(project, ids, per_image, chosen, source)
