"""The Learn page's steps: each draws its controls, asks its question (``ask``) and, on Reveal, its
picture; ``wsseg.views.lesson`` holds the texts and judges the answer. ``DRAW`` maps a step key to its drawer.
Nothing here runs on import: the page is ``pages/learn.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from pages import cached
from pages.common import peak_filter_sliders
from pages.curate_draw import CANDIDATE_COLOUR, overlay
from wsseg.methods.cams import LABELS as CAM_LABELS
from wsseg.methods.cams import class_map
from wsseg.methods.crf import CRFConfig
from wsseg.methods.overlap import mask_iou
from wsseg.methods.prm import METHODS
from wsseg.methods.pseudo_masks import RetrievalConfig
from wsseg.models.cam_models import peak_classifier_cams
from wsseg.models.maskrcnn import predict as predict_instances
from wsseg.models.normalise import to_tensor
from wsseg.stages.evaluate_ple import predict as predict_labels
from wsseg.store.project import Project
from wsseg.structures import Instances, label_map
from wsseg.views.cam import ImageMaps, PeakSettings, checkpoint_path, class_heat, class_peaks
from wsseg.views.lesson import (
    Outcome,
    Step,
    cam_outcome,
    detection_outcome,
    judge,
    methods_outcome,
    peaks_outcome,
    prm_outcome,
    proposals_outcome,
    pseudo_mask_outcome,
    semantic_outcome,
    tags_outcome,
)
from wsseg.views.lesson_data import demo_scores, open_demo_maskrcnn, open_demo_ple
from wsseg.views.overlay import (
    COLORMAPS,
    OverlayStyle,
    crm_to_pixels,
    display_scale,
    draw_peaks,
    enlarge,
    greyed,
    jpeg_bytes,
    overlay_view,
    prm_heat,
    with_colour_bar,
)
from wsseg.views.retrieval import newest_runs, rank_proposals

CLASS_COLOURS = [(230, 60, 60), (60, 200, 90), (70, 120, 255), (255, 200, 0), (200, 90, 230), (0, 200, 200)]
BETAS = [0.0, 1e-5, 1e-3, 1e-2, 0.1, 1.0]
SIZE = 360


@dataclass(frozen=True)
class Lesson:
    """What every step draws on: the lesson project, the image (by its 1-based ``number``), its truth,
    its maps and the cache stamps."""

    project: Project
    root: str
    number: int
    image_id: int
    tags: tuple[str, ...]
    classes: list[str]
    truth: Instances
    maps: ImageMaps
    stamp: tuple


@st.cache_resource(show_spinner="Loading the demo Mask R-CNN…")
def _maskrcnn() -> tuple | None:
    return open_demo_maskrcnn()


@st.cache_resource(show_spinner="Loading the demo pixel-label estimator…")
def _ple() -> tuple | None:
    return open_demo_ple()


@st.cache_resource(max_entries=32, show_spinner="Mask R-CNN at work…")
def _instances(root: str, image_id: int) -> Instances:
    return predict_instances(_maskrcnn()[0], [cached.maps(root, image_id, lesson_stamp(root)).image], 0.5)[0]


@st.cache_resource(max_entries=64, show_spinner="The estimator at work…")
def _labels(root: str, image_id: int, crf: bool) -> tuple[np.ndarray, np.ndarray]:
    image = cached.maps(root, image_id, lesson_stamp(root)).image
    return predict_labels(_ple()[0], image, CRFConfig() if crf else None)


def lesson_stamp(root: str) -> tuple:
    project = Project(root)
    peaks_run, _ = newest_runs(project)
    return (checkpoint_path(project).stat().st_mtime, peaks_run.id if peaks_run else 0)


def _show(picture: np.ndarray, caption: str | None = None) -> None:
    st.image(jpeg_bytes(picture), caption=caption, width="stretch")


def _big(image: np.ndarray) -> np.ndarray:
    return enlarge(image, display_scale(image.shape[:2], SIZE))


def _outlined(
    image: np.ndarray, truth: Instances, class_index: int | None = None, colour: tuple | None = None
) -> np.ndarray:
    """The true outlines of one class (white) or of all (in their class colours, or ``colour``)."""
    out = image
    for mask, label in zip(truth.masks, truth.labels, strict=True):
        if class_index is None or int(label) == class_index:
            shade = colour or ((255, 255, 255) if class_index is not None else CLASS_COLOURS[int(label)])
            out = overlay(out, mask, shade, alpha=0.0)
    return out


def _marked(image: np.ndarray, point: tuple[int, int]) -> np.ndarray:
    scale = display_scale(image.shape[:2], SIZE)
    return draw_peaks(enlarge(image, scale), [point], labels=["•"], scale=scale, radius=8, selected=0)


def _reveal(key: str, number: int) -> None:
    """Reveal: the guess made now is locked (its radio disabled) until Try again or moving on."""
    st.session_state.setdefault("learn_revealed", {})[key] = {
        "number": number,
        "answer": st.session_state.get(f"learn_answer_{key}"),
        "verdict": None,
    }


def _try_again(key: str) -> None:
    st.session_state.setdefault("learn_revealed", {}).pop(key, None)
    st.session_state[f"learn_answer_{key}"] = None


def reset_lesson(keys: Sequence[str]) -> None:
    """Forget every reveal and guess (the learner moved to another step or image); call before the
    step's widgets are drawn."""
    st.session_state["learn_revealed"] = {}
    for key in keys:
        st.session_state[f"learn_answer_{key}"] = None


def ask(lesson: Lesson, step: Step, values: dict, before: np.ndarray, reveal: Callable[[], Outcome]) -> None:
    """The question and the picture before it; on Reveal, ``reveal()`` draws what happened in the
    right column and returns it, and the verdict is shown.

    The verdict is judged once, on Reveal, with the guess and the settings of that moment, and stays
    until Try again (or moving to another step or image): the guess cannot be changed after seeing
    the answer. Controls moved afterwards still redraw the picture, and what they change is said
    beside the verdict, without judging it again."""
    key = step.key
    revealed = st.session_state.setdefault("learn_revealed", {})
    locked = revealed.get(key)
    if locked is not None and locked["number"] != lesson.number:
        revealed.pop(key)
        locked = None
    st.radio(
        "What do you expect? " + step.question.format(**values),
        [k for k, _ in step.choices],
        index=None,
        format_func=lambda k: step.choice_text(k, **values),
        key=f"learn_answer_{key}",
        disabled=locked is not None,
    )
    if locked is None:
        st.button(
            "Reveal", key=f"learn_reveal_{key}", type="primary", on_click=_reveal, args=(key, lesson.number)
        )
    else:
        st.button(
            "Try again", key=f"learn_again_{key}", icon=":material/replay:", on_click=_try_again, args=(key,)
        )
    left, right = st.columns(2)
    with left:
        _show(before, "What the stage starts from")
    with right:
        if locked is None:
            st.info("Make your guess, then press **Reveal**.")
            return
        outcome = reveal()
    if locked["verdict"] is None:  # the run of the Reveal click: judge it, once
        verdict = judge(step, outcome, locked["answer"], **values)
        locked["verdict"] = (verdict.correct, verdict.message, outcome.why)
    correct, message, why = locked["verdict"]
    (st.success if correct else st.warning)(message)
    if outcome.why != why:
        st.info(
            f"With the settings now: {outcome.why} (The verdict above is for your guess with the settings "
            "you had when you pressed Reveal; press **Try again** to guess anew.)"
        )


def tags_step(lesson: Lesson, step: Step) -> None:
    scores = st.toggle("Show what the trained classifier predicts", value=False, key="learn_scores")
    if scores:
        probs = 1.0 / (1.0 + np.exp(-lesson.maps.class_scores.astype(np.float64)))
        st.dataframe(
            pd.DataFrame(
                {"class": lesson.classes, "tagged": [c in lesson.tags for c in lesson.classes], "p": probs}
            ),
            hide_index=True,
        )

    def reveal() -> Outcome:
        _show(
            _big(_outlined(lesson.maps.image, lesson.truth)),
            "True outlines, coloured by class (for scoring only)",
        )
        return tags_outcome(lesson.tags, lesson.truth)

    st.markdown(f"**Tags of this image:** {', '.join(lesson.tags) or 'none'}")
    ask(lesson, step, {}, _big(lesson.maps.image), reveal)


def _class_choice(lesson: Lesson, key: str, tagged_only: bool, column: object = st) -> int:
    options = [k for k, c in enumerate(lesson.classes) if c in lesson.tags or not tagged_only]
    return column.selectbox(
        "Class",
        options,
        format_func=lambda k: f"{lesson.classes[k]} ({'tagged' if lesson.classes[k] in lesson.tags else 'absent'})",
        key=key,
    )


def cam_step(lesson: Lesson, step: Step) -> None:
    row = st.columns(4)
    k = _class_choice(lesson, "learn_cam_class", tagged_only=False, column=row[0])
    colormap = row[1].selectbox("Colormap", list(COLORMAPS), key="learn_colormap")
    opacity = row[2].slider("Opacity", 0.0, 1.0, 0.55, 0.05, key="learn_opacity")
    shared = row[3].toggle("One scale for all classes", value=True, key="learn_shared")
    maps = lesson.maps

    def reveal() -> Outcome:
        heat = class_heat(maps, k, shared)
        base = _outlined(maps.image, lesson.truth, k)
        top = float(maps.crm.max() if shared else maps.crm[k].max())
        whose = "the strongest class map here" if shared else "this map's own maximum"
        _show(
            with_colour_bar(overlay_view(base, heat, OverlayStyle(opacity, colormap), target=SIZE), colormap),
            f"Map of {lesson.classes[k]}. Colour scale: 0 = no response; 1 = {whose} (raw score {top:.2g}).",
        )
        pixels = np.stack([crm_to_pixels(c, maps.stride, maps.image.shape[:2]) for c in maps.crm])
        return cam_outcome(pixels, k, lesson.truth, lesson.classes)

    ask(lesson, step, {"name": lesson.classes[k]}, _big(maps.image), reveal)


#: The methods the Learn step offers (Score-CAM's one pass a channel is too slow to wait for here).
LESSON_METHODS = ["crm", "gradcam", "gradcam++", "layercam", "eigencam"]


@st.cache_resource(max_entries=64, show_spinner="Computing the map…")
def _method_map(
    root: str, image_id: int, stamp: tuple, _image: np.ndarray, k: int, method: str
) -> np.ndarray | None:
    """One CAM method's map of the lesson image for class ``k`` (None without a classifier)."""
    found = cached.classifier(root, stamp[0])
    if found is None:
        return None
    model = peak_classifier_cams(found.model, found.classes, "the lesson's classifier")
    return class_map(model, to_tensor(_image)[None], k, method)


def methods_step(lesson: Lesson, step: Step) -> None:
    row = st.columns(3)
    k = _class_choice(lesson, "learn_methods_class", tagged_only=True, column=row[0])
    first = row[1].selectbox("First method", LESSON_METHODS, format_func=CAM_LABELS.get, key="learn_first")
    second = row[2].selectbox(
        "Second method",
        LESSON_METHODS,
        index=len(LESSON_METHODS) - 1,
        format_func=CAM_LABELS.get,
        key="learn_second",
    )
    name = lesson.classes[k]
    labels = [CAM_LABELS[first], CAM_LABELS[second]]

    def reveal() -> Outcome:
        maps = [
            _method_map(lesson.root, lesson.image_id, lesson.stamp, lesson.maps.image, k, m)
            for m in (first, second)
        ]
        if maps[0] is None or maps[1] is None:
            st.warning("The lesson has no classifier to compute these maps.")
            return Outcome("neither", "no classifier")
        base = _outlined(greyed(lesson.maps.image), lesson.truth, k)
        pictures = []
        for heat in maps:
            y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
            pictures.append(
                overlay_view(base, heat, OverlayStyle(0.7), [(int(y), int(x))], 0, target=SIZE, labels=["+"])
            )
        gap = np.full((pictures[0].shape[0], 12, 3), 255, np.uint8)
        _show(
            with_colour_bar(np.concatenate([pictures[0], gap, pictures[1]], axis=1), OverlayStyle().colormap),
            f"Left: {labels[0]}; right: {labels[1]}. Each map over its own range (0 to 1); + marks its brightest "
            "pixel; the outlines are the true objects of the class.",
        )
        return methods_outcome(maps, labels, k, lesson.truth, name)

    ask(
        lesson, step, {"name": name, "first": labels[0], "second": labels[1]}, _big(lesson.maps.image), reveal
    )


def _count(lesson: Lesson, k: int) -> int:
    return int((lesson.truth.labels == k).sum())


def peaks_step(lesson: Lesson, step: Step) -> None:
    row = st.columns(4)
    k = _class_choice(lesson, "learn_peaks_class", tagged_only=True, column=row[0])
    default, windows = PeakSettings(), [1, 3, 5, 7, 9, 15]
    window = row[1].selectbox("Peak window", windows, index=windows.index(default.window), key="learn_window")
    threshold, smooth = peak_filter_sliders(row[2], row[3], default, "learn")
    settings = PeakSettings(window=window, relative_threshold=threshold, smooth=smooth)
    peaks = class_peaks(lesson.maps, settings, k)
    points = [(p.y, p.x) for p in peaks]
    name = lesson.classes[k]

    def reveal() -> Outcome:
        base = _outlined(lesson.maps.image, lesson.truth, k)
        heat = class_heat(lesson.maps, k, shared=False)
        _show(
            overlay_view(base, heat, OverlayStyle(), points, target=SIZE), f"{len(peaks)} peak(s) of {name}"
        )
        return peaks_outcome(points, lesson.truth, k, name)

    ask(lesson, step, {"name": name, "count": _count(lesson, k)}, _big(lesson.maps.image), reveal)


def prm_step(lesson: Lesson, step: Step) -> None:
    row = st.columns(3)
    k = _class_choice(lesson, "learn_prm_class", tagged_only=True, column=row[0])
    peaks = class_peaks(lesson.maps, PeakSettings(), k)
    name = lesson.classes[k]
    if not peaks:
        st.info(f"The classifier gives {name} no peak on this image: choose another class or image.")
        return
    pick = row[1].selectbox(
        "Peak",
        range(len(peaks)),
        format_func=lambda i: f"{i + 1} at ({peaks[i].y}, {peaks[i].x})",
        key="learn_prm_peak",
    )
    method = row[2].selectbox("Method", list(METHODS), key="learn_prm_method")
    peak = peaks[min(pick, len(peaks) - 1)]
    number = str(min(pick, len(peaks) - 1) + 1)  # as in the Peak list

    def reveal() -> Outcome:
        prm, origin = cached.prm(lesson.root, lesson.image_id, lesson.stamp, PeakSettings(), peak, method)
        if prm is None:
            st.warning(f"No PRM for this peak: {origin}.")
            return Outcome("whole", origin)
        base = _outlined(greyed(lesson.maps.image), lesson.truth, k)
        heat, scale = prm_heat(prm)
        picture = overlay_view(
            base, heat, OverlayStyle(0.7), [(peak.y, peak.x)], 0, target=SIZE, labels=[number]
        )
        _show(
            with_colour_bar(picture, OverlayStyle().colormap, scale.ticks),
            f"{origin}. Colour scale: {scale.text}.",
        )
        return prm_outcome(prm, (peak.y, peak.x), lesson.truth, k, name)

    ask(lesson, step, {"name": name}, _marked(lesson.maps.image, (peak.y, peak.x)), reveal)


def _candidates(lesson: Lesson):
    peaks_run, proposals_run = newest_runs(lesson.project)
    return cached.candidates(lesson.root, lesson.image_id, (peaks_run.id, proposals_run.id))


def proposals_step(lesson: Lesson, step: Step) -> None:
    cands = _candidates(lesson)
    row = st.columns(2)
    top = row[0].slider("Proposals drawn (best objectness first)", 1, 60, 15, key="learn_top")
    best = row[1].toggle("Tint the best match of each shape", value=True, key="learn_best")
    masks = cands.proposals.masks

    def reveal() -> Outcome:
        out = cands.image
        for n, mask in enumerate(masks[:top]):
            out = overlay(out, mask, CLASS_COLOURS[n % len(CLASS_COLOURS)], alpha=0.0)
        if best and len(lesson.truth):
            for row_ in mask_iou(lesson.truth.masks, masks):
                out = overlay(out, masks[int(np.argmax(row_))], CANDIDATE_COLOUR, alpha=0.45)
        _show(_big(out), f"{top} of {len(masks)} proposals outlined")
        return proposals_outcome(masks, lesson.truth)

    ask(lesson, step, {"count": len(lesson.truth)}, _big(cands.image), reveal)


def pseudo_step(lesson: Lesson, step: Step) -> None:
    cands = _candidates(lesson)
    usable = [i for i, p in enumerate(cands.peaks) if lesson.classes[p.class_index] in lesson.tags]
    if not usable:
        st.info("No peak of a tagged class on this image: choose another image.")
        return
    row = st.columns(4)
    pick = row[0].selectbox(
        "Peak",
        usable,
        format_func=lambda i: f"{lesson.classes[cands.peaks[i].class_index]} at ({cands.peaks[i].y}, {cands.peaks[i].x})",
        key="learn_pseudo_peak",
    )
    strategy = row[1].radio("Strategy", ["prm", "wise"], horizontal=True, key="learn_strategy")
    alpha = row[2].slider("alpha (PRM inside)", 0.0, 2.0, 0.8, 0.05, key="learn_alpha")
    beta = row[3].select_slider("beta (background penalty)", BETAS, value=1e-2, key="learn_beta")
    peak = cands.peaks[pick]
    name = lesson.classes[peak.class_index]
    config = RetrievalConfig(strategy=strategy, alpha=alpha, beta=beta, point="peak")
    ranking = rank_proposals(cands, pick, config)

    def reveal() -> Outcome:
        out = _outlined(cands.image, lesson.truth, peak.class_index)
        if ranking.mask is not None:
            out = overlay(out, ranking.mask, CLASS_COLOURS[peak.class_index], alpha=0.45)
        _show(
            _marked(out, (peak.y, peak.x)), f"Chosen by the {strategy.upper()} strategy (true outlines white)"
        )
        columns = ["rank", "proposal", "score", "inside", "contour", "background", "objectness", "area"]
        st.dataframe(
            pd.DataFrame(ranking.rows[:5]).reindex(columns=columns).dropna(axis=1, how="all"), hide_index=True
        )
        return pseudo_mask_outcome(ranking.mask, (peak.y, peak.x), lesson.truth, peak.class_index, name)

    ask(lesson, step, {"name": name}, _marked(cands.image, (peak.y, peak.x)), reveal)


def _missing_model(what: str) -> None:
    st.info(
        f"The demo {what} is not in `assets/`. Make it (about 20 minutes on a CPU) with "
        "`python -m wsseg demo-checkpoint --models`."
    )


def maskrcnn_step(lesson: Lesson, step: Step) -> None:
    if _maskrcnn() is None:
        _missing_model("Mask R-CNN")
        return
    row = st.columns(2)
    threshold = row[0].slider("Score threshold", 0.05, 0.95, 0.5, 0.05, key="learn_score")
    outlines = row[1].toggle("Show the true outlines (white)", value=True, key="learn_outlines")
    predicted = _instances(lesson.root, lesson.image_id)
    scores = demo_scores().get("maskrcnn")
    if scores:
        st.caption(
            f"This demo model's mask mAP at IoU 0.5 on 100 held-out shapes images: {scores['map50']:.2f} "
            "(measured by `wsseg demo-checkpoint --models`, assets/demo-models.json)."
        )

    def reveal() -> Outcome:
        out = lesson.maps.image
        keep = np.flatnonzero(predicted.scores >= threshold)
        for i in keep:
            out = overlay(out, predicted.masks[i], CLASS_COLOURS[int(predicted.labels[i])], alpha=0.45)
        if outlines:
            out = _outlined(out, lesson.truth, colour=(255, 255, 255))
        found = ", ".join(
            f"{lesson.classes[int(predicted.labels[i])]} {predicted.scores[i]:.2f}" for i in keep
        )
        _show(_big(out), f"Kept: {found or 'nothing'}")
        return detection_outcome(predicted, lesson.truth, threshold)

    ask(lesson, step, {"count": len(lesson.truth)}, _big(lesson.maps.image), reveal)


def ple_step(lesson: Lesson, step: Step) -> None:
    if _ple() is None:
        _missing_model("pixel-label estimator")
        return
    row = st.columns(3)
    k = _class_choice(lesson, "learn_ple_class", tagged_only=True, column=row[0])
    crf = row[1].toggle("Refine with the dense CRF", value=False, key="learn_crf")
    view = row[2].radio("Show", ["labels", f"p({lesson.classes[k]})"], horizontal=True, key="learn_ple_view")
    labels, probs = _labels(lesson.root, lesson.image_id, crf)
    truth = label_map(lesson.truth, labels.shape)
    scores = demo_scores().get("ple")
    if scores:
        st.caption(
            f"This demo estimator's mIoU (background and 4 classes) on 100 held-out images: {scores['miou']:.2f}."
        )

    def reveal() -> Outcome:
        image = lesson.maps.image
        if view == "labels":
            out = image
            for label in range(1, int(labels.max()) + 1):
                out = overlay(out, labels == label, CLASS_COLOURS[label - 1], alpha=0.5)
            _show(_big(_outlined(out, lesson.truth, k)), "Label of every pixel (background untinted)")
        else:
            _show(
                overlay_view(image, probs[k + 1], OverlayStyle(0.6), target=SIZE),
                f"p({lesson.classes[k]}) per pixel",
            )
        return semantic_outcome(labels, truth, k + 1, lesson.classes[k])

    ask(lesson, step, {"name": lesson.classes[k]}, _big(lesson.maps.image), reveal)


DRAW: dict[str, Callable[[Lesson, Step], None]] = {
    "tags": tags_step,
    "cam": cam_step,
    "methods": methods_step,
    "peaks": peaks_step,
    "prm": prm_step,
    "proposals": proposals_step,
    "pseudo": pseudo_step,
    "maskrcnn": maskrcnn_step,
    "ple": ple_step,
}
