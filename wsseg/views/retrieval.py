"""What the Proposals and pseudo masks page shows: one image's peaks and proposals, and for one peak
the proposals ranked by a strategy with every term of their score.

The peaks (with their PRMs and the CRMs) come from a finished ``peaks`` run's npz
(``wsseg.stages.make_peaks``), the proposals from a finished ``proposals`` run's JSON
(``wsseg.stages.make_proposals``); the ranking is ``wsseg.methods.pseudo_masks.retrieve`` on that one peak,
with no NMS and every proposal kept, so the page's chosen mask is the one the pseudo-mask stage
would choose for the peak. Pure numpy: no streamlit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from wsseg.data.images import read_image
from wsseg.methods.proposals import Proposals
from wsseg.methods.pseudo_masks import PeakInput, RetrievalConfig, retrieve
from wsseg.stages.make_peaks import STAGE as PEAKS_STAGE
from wsseg.stages.make_peaks import load_result
from wsseg.stages.make_proposals import STAGE as PROPOSALS_STAGE
from wsseg.stages.make_proposals import load_proposals
from wsseg.stages.make_pseudo_masks import image_peaks
from wsseg.stages.recipes import WORKING_SIDE
from wsseg.store.project import ImageRecord, Project, RunRecord

#: The PRM score's terms as they add up: (column name, the raw term it weighs).
WEIGHTED_TERMS: tuple[tuple[str, str], ...] = (
    ("alpha x inside", "inside"),
    ("contour", "contour"),
    ("-beta x background", "background"),
)


@dataclass(frozen=True)
class ImageCandidates:
    """One image's inputs to retrieval, all at the proposals' resolution H x W.

    image: HxWx3 uint8, the stored image. crm: float32 Cxhxw raw class response maps.
    peaks: every peak of the peaks run for the image, strongest first as stored, each with its PRM
    (HxW float32 summing to 1) and (y, x) in pixels. proposals: KxHxW bool, best objectness first.
    peaks_run, proposals_run: the run ids they come from.
    """

    image: np.ndarray
    crm: np.ndarray
    peaks: list[PeakInput]
    proposals: Proposals
    peaks_run: int
    proposals_run: int


@dataclass(frozen=True)
class Ranking:
    """The proposals ranked for one peak by one strategy.

    rows: one dict per usable proposal, best first: ``rank`` (1-based), ``proposal`` (index),
    ``score``, the raw terms (``inside``, ``contour``, ``background`` for "prm"; ``inside`` = 1 for
    "wise"), ``objectness``, ``area`` (pixels) and, for "prm", the weighted terms of
    ``WEIGHTED_TERMS`` that sum to ``score``.
    mask: HxW bool, the chosen proposal (None when no proposal is usable).
    point: (y, x) the peak's point (``RetrievalConfig.point``), or None with no usable proposal.
    """

    rows: list[dict[str, Any]]
    mask: np.ndarray | None
    point: tuple[int, int] | None


def newest_runs(project: Project) -> tuple[RunRecord | None, RunRecord | None]:
    """(newest finished peaks run, newest finished proposals run); None for a stage never run."""
    return project.latest_run(PEAKS_STAGE), project.latest_run(PROPOSALS_STAGE)


def load_candidates(
    project: Project, record: ImageRecord, peaks_run: int, proposals_run: int
) -> ImageCandidates | None:
    """The peaks and proposals of ``record`` from the two runs; None when either run lacks the image.

    PRMs are resized to the proposals' size (and renormalised) as the pseudo-mask stage does."""
    peaks_file = project.artifact(PEAKS_STAGE, peaks_run, record.id, ".npz")
    proposals_file = project.artifact(PROPOSALS_STAGE, proposals_run, record.id, ".json")
    if not peaks_file.is_file() or not proposals_file.is_file():
        return None
    data = load_result(peaks_file)
    proposals = load_proposals(proposals_file, WORKING_SIDE)  # a large image's, as the stage chose among them
    shape = proposals.masks.shape[1:]
    image = read_image(project.image_path(record), record.filename)
    if image.shape[:2] != shape:
        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    peaks = image_peaks(data, shape, list(range(len(data["peaks"]))))
    return ImageCandidates(image, data["crm"], peaks, proposals, peaks_run, proposals_run)


def rank_proposals(candidates: ImageCandidates, peak_index: int, config: RetrievalConfig) -> Ranking:
    """Every usable proposal for peak ``peak_index`` ranked by ``config`` (its ``top_k`` and
    ``nms_iou`` are ignored: all proposals are ranked and one peak needs no NMS)."""
    peak = candidates.peaks[peak_index]
    every = dataclasses.replace(config, top_k=len(candidates.proposals), nms_iou=None)
    found = retrieve(candidates.proposals, [peak], candidates.crm, every)
    if not found:
        return Ranking([], None, None)
    rows = []
    for rank, entry in enumerate(found[0].ranked, start=1):
        row: dict[str, Any] = {"rank": rank, **entry}
        if config.strategy == "prm":
            row["alpha x inside"] = config.alpha * entry["inside"]
            row["-beta x background"] = -config.beta * entry["background"]
        rows.append(row)
    return Ranking(rows, found[0].mask, found[0].point)


def rank_of(ranking: Ranking, proposal: int) -> int | None:
    """The 1-based rank of proposal index ``proposal`` in ``ranking``, None when it is not ranked."""
    return next((row["rank"] for row in ranking.rows if row["proposal"] == proposal), None)


def describe_proposal(entry: Mapping[str, Any], image_area: int | None = None) -> str:
    """One ranked proposal (a ``PseudoMask.ranked`` or ``Ranking.rows`` dict) in words.

    For the PRM strategy: the share of the peak's response inside it and on its outline (the PRM
    sums to 1), and the share of its area on background (``background`` counts its pixels where the
    class map is weak); for WISE: that it holds the peak's point, with its objectness. Its size is
    given in pixels (``area``), and as a share of the image when ``image_area`` is given. Terms the
    entry does not hold are left out.
    """
    area = int(entry.get("area", 0))
    parts = []
    if "contour" in entry and "background" in entry:
        parts.append(
            f"covers {float(entry['inside']):.0%} of the peak's response ({float(entry['contour']):.0%} "
            "on its outline)"
        )
        if area:
            parts.append(f"{float(entry['background']) / area:.0%} of its area lies on background")
    elif "objectness" in entry:
        parts.append(f"holds the peak's point; objectness {float(entry['objectness']):.2f}")
    if area:
        parts.append(f"{area} px" + (f" ({area / image_area:.1%} of the image)" if image_area else ""))
    return "; ".join(parts) or "no score terms recorded"
