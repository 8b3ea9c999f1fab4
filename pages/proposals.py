"""Proposals and pseudo masks page: for one peak of an image, the proposals ranked by the PRM
retrieval score with every term of it (table and chart), the chosen mask, live alpha, beta and bg
controls that re-rank, and the PRM and WISE strategies side by side.

Peaks, PRMs and CRMs come from the newest peaks run (``wsseg peaks``), proposals from the newest
proposals run (``wsseg proposals``); the ranking is ``wsseg.methods.pseudo_masks.retrieve`` on the chosen
peak (``wsseg.views.retrieval``). The controls live in an ``st.fragment``: moving one re-ranks and
redraws only the viewer, on the cached inputs.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.cached import candidates as _candidates
from pages.common import current_project, skipped_note, tag_filter
from pages.curate_draw import CANDIDATE_COLOUR, overlay
from pages.hints import missing_step
from wsseg.methods.pseudo_masks import RetrievalConfig, background_map
from wsseg.views.overlay import (
    OverlayStyle,
    display_scale,
    draw_peaks,
    enlarge,
    greyed,
    jpeg_bytes,
    overlay_view,
    prm_heat,
    with_colour_bar,
)
from wsseg.views.retrieval import (
    WEIGHTED_TERMS,
    ImageCandidates,
    Ranking,
    newest_runs,
    rank_of,
    rank_proposals,
)

BETAS = [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
PRM_COLOUR = (255, 220, 0)  # yellow: the PRM strategy; WISE in CANDIDATE_COLOUR (cyan)
POINTS = {"prm_argmax": "PRM argmax", "peak": "the peak itself"}
TABLE_COLUMNS = ["rank", "proposal", "score", *[n for n, _ in WEIGHTED_TERMS], "inside", "background"]
TABLE_COLUMNS += ["objectness", "area"]


def _mask_picture(
    cands: ImageCandidates, ranking: Ranking, rank: int, colour: tuple[int, int, int] = PRM_COLOUR
) -> np.ndarray:
    """HxWx3 uint8, enlarged: the proposal of 1-based ``rank`` tinted on the image, with the point."""
    scale = display_scale(cands.image.shape[:2], 320)
    mask = cands.proposals.masks[ranking.rows[rank - 1]["proposal"]]
    tinted = overlay(cands.image, mask, colour)
    return draw_peaks(enlarge(tinted, scale), [ranking.point], labels=["•"], scale=scale, radius=6)


def _chart(rows: list[dict]) -> go.Figure:
    """Stacked bars of the weighted terms of each ranked proposal, its score as a diamond."""
    labels = [f"#{r['rank']} (p{r['proposal']})" for r in rows]
    fig = go.Figure()
    for name, _ in WEIGHTED_TERMS:
        fig.add_bar(name=name, x=labels, y=[r[name] for r in rows])
    fig.add_scatter(
        name="score", x=labels, y=[r["score"] for r in rows], mode="markers", marker_symbol="diamond"
    )
    fig.update_layout(
        barmode="relative",
        height=320,
        margin=dict(l=10, r=10, t=30, b=10),
        title="PRM score = alpha x inside + contour - beta x background",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


@st.fragment
def viewer(cands: ImageCandidates, peak_index: int, class_name: str) -> None:
    started = time.perf_counter()
    peak = cands.peaks[peak_index]
    row = st.columns([2, 2, 2, 2, 2])
    alpha = row[0].slider("alpha (weight of the PRM inside)", 0.0, 2.0, 0.8, 0.05, key="pm_alpha")
    beta = row[1].select_slider("beta (background penalty)", BETAS, value=1e-2, key="pm_beta")
    bg = row[2].slider("bg (background below bg x mean CRM)", 0.0, 2.0, 0.95, 0.05, key="pm_bg")
    point = row[3].radio(
        "WISE point", list(POINTS), format_func=POINTS.__getitem__, key="pm_point", horizontal=True
    )
    top = row[4].slider("Proposals listed", 3, 30, 10, key="pm_top")
    contain = st.checkbox(
        "PRM strategy: only proposals that hold the peak (the default; off is PRM as published)",
        value=RetrievalConfig().contain_point,
        key="pm_contain",
    )

    prm = rank_proposals(
        cands, peak_index, RetrievalConfig(alpha=alpha, beta=beta, bg=bg, point="peak", contain_point=contain)
    )
    wise = rank_proposals(cands, peak_index, RetrievalConfig(strategy="wise", point=point))
    style = OverlayStyle(opacity=0.85)
    pictures = st.columns(4)
    with pictures[0]:
        st.markdown(f"**PRM of the peak** ({class_name})")
        heat, scale = prm_heat(peak.prm)
        picture = overlay_view(greyed(cands.image), heat, style, [(peak.y, peak.x)], 0, target=320)
        st.image(
            jpeg_bytes(with_colour_bar(picture, style.colormap, scale.ticks)),
            caption=f"peak at (y, x) = ({peak.y}, {peak.x}) · colour scale: {scale.text}",
            width="stretch",
        )
    with pictures[1]:
        st.markdown(f"**Background Q** (bg = {bg:.2f})")
        q = background_map(cands.crm[peak.class_index], cands.image.shape[:2], bg)
        picture = overlay_view(cands.image, q, OverlayStyle(0.5, "hot"), target=320)
        st.image(
            jpeg_bytes(picture), caption=f"{q.mean():.0%} of the image counts as background", width="stretch"
        )
    with pictures[2]:
        st.markdown("**PRM strategy**")
        if not prm.rows:
            st.info("No usable proposal (every one is outside the area limits).")
        else:
            shown = min(top, len(prm.rows))
            if st.session_state.get("pm_rank") not in range(1, shown + 1):
                st.session_state["pm_rank"] = 1
            rank = st.selectbox("Proposal shown (rank)", range(1, shown + 1), key="pm_rank")
            chosen = "the chosen mask" if rank == 1 else f"rank {rank}"
            st.image(
                jpeg_bytes(_mask_picture(cands, prm, rank)),
                caption=f"{chosen} · proposal {prm.rows[rank - 1]['proposal']} · score {prm.rows[rank - 1]['score']:.4g}",
                width="stretch",
            )
    with pictures[3]:
        st.markdown(f"**WISE strategy** (point: {POINTS[point]})")
        if not wise.rows:
            st.info("No usable proposal holds the point.")
        else:
            best = wise.rows[0]
            st.image(
                jpeg_bytes(_mask_picture(cands, wise, 1, CANDIDATE_COLOUR)),
                caption=f"proposal {best['proposal']} · objectness {best['objectness']:.3g} · "
                f"PRM rank {rank_of(prm, best['proposal']) or '-'}",
                width="stretch",
            )
    if prm.rows and wise.rows:
        a, b = prm.mask, wise.mask
        iou = np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum())
        st.caption(f"The two strategies' masks overlap with IoU {iou:.2f} (point at {wise.point}).")

    if prm.rows:
        st.subheader("Ranked proposals (PRM score)")
        rows = prm.rows[:top]
        st.dataframe(pd.DataFrame(rows)[TABLE_COLUMNS], hide_index=True, key="pm_table")
        st.plotly_chart(_chart(rows), key="pm_chart")
    if wise.rows:
        with st.expander(f"WISE: the {len(wise.rows)} proposal(s) holding the point, by objectness"):
            st.dataframe(
                pd.DataFrame(wise.rows[:top])[["rank", "proposal", "objectness", "area"]], hide_index=True
            )
    st.caption(f"Viewer rendered in {(time.perf_counter() - started) * 1000:.0f} ms on the server.")


st.title("Proposals and pseudo masks")
project = current_project()
if project is None:
    st.stop()
peaks_run, proposals_run = newest_runs(project)
if peaks_run is None or proposals_run is None:
    missing = [
        "Peaks and PRMs (after the Classifier)" if peaks_run is None else None,
        "Proposals (selective search)" if proposals_run is None else None,
    ]
    missing_step(
        "This page ranks each peak's proposals, so it needs a finished peaks run and a finished proposals "
        "run. Run the pipeline's steps " + " and ".join(m for m in missing if m) + "."
    )
    st.stop()
stamp = (peaks_run.id, proposals_run.id)
skipped_note([peaks_run, proposals_run])

tag, untagged, total = tag_filter(project, key="pm_tag")
if total == 0:
    st.info("No image matches this filter.")
    st.stop()
number = st.number_input(f"Image (1 to {total})", min_value=1, max_value=total, value=1, key="pm_image")
record = project.images(tag=tag, untagged=untagged, offset=number - 1, limit=1)[0]
cands = _candidates(str(project.root), record.id, stamp)
if cands is None:
    st.warning(
        f"{record.filename} is not in peaks run {peaks_run.id} or proposals run {proposals_run.id}: "
        "run the pipeline's Peaks and Proposals steps again (Project page) to include it."
    )
    st.stop()
if not cands.peaks:
    st.info(f"Peaks run {peaks_run.id} found no peak on {record.filename}: choose another image.")
    st.stop()
classes = project.classes()
labels = [
    f"{k + 1} · {classes[p.class_index]} · {'tagged' if classes[p.class_index] in record.tags else 'absent'} "
    f"· ({p.y}, {p.x}) · {p.value:+.2f}"
    for k, p in enumerate(cands.peaks)
]
if st.session_state.get("pm_peak") not in range(len(labels)):
    st.session_state["pm_peak"] = next(
        (k for k, p in enumerate(cands.peaks) if classes[p.class_index] in record.tags), 0
    )
peak_index = st.selectbox("Peak", range(len(labels)), format_func=labels.__getitem__, key="pm_peak")
st.caption(
    f"**{record.filename}** · tags: {', '.join(record.tags) or 'none'} · {len(cands.peaks)} peak(s) from "
    f"peaks run {peaks_run.id} · {len(cands.proposals)} proposals from proposals run {proposals_run.id}"
)
viewer(cands, peak_index, classes[cands.peaks[peak_index].class_index])
