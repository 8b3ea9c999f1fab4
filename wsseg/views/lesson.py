"""The Learn page's lesson, from tags to masks: one step per stage, each with a plain-language
explanation, a "what do you expect?" question, and the judge of an answer.

A step's expected answer is not fixed in advance: it is read off what the stage actually does on the
lesson image with the learner's settings (``*_outcome`` functions, pure numpy), so the reveal can say
whether the guess was right and why, in figures. Masks are HxW bool, maps HxW float; truth is the
image's ground-truth ``Instances`` (shown and used for judging only, never for training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from wsseg.errors import BadInputError
from wsseg.methods.overlap import best_overlaps, mask_iou
from wsseg.structures import Instances


@dataclass(frozen=True)
class Step:
    """One stage of the lesson. ``question`` and the choice texts may hold ``{name}`` (the class in
    question) and ``{count}`` (its true instances); ``choices`` are (key, text) pairs."""

    key: str
    title: str
    explanation: str
    question: str
    choices: tuple[tuple[str, str], ...]

    def choice_text(self, key: str, **values: object) -> str:
        return dict(self.choices)[key].format(**values)


@dataclass(frozen=True)
class Outcome:
    """What the stage did: ``expected`` is the key of the choice that came true, ``why`` says so in
    figures."""

    expected: str
    why: str


@dataclass(frozen=True)
class Verdict:
    correct: bool
    message: str


STEPS: tuple[Step, ...] = (
    Step(
        "tags",
        "1 · Tags: the only labels",
        "Every training image comes with a list of the classes it contains, its **tags**, and nothing "
        "else: no boxes, no outlines. A tag takes a second to give; an outline takes minutes. A "
        "classifier is trained to predict the tags of each image, and everything that follows is read "
        "out of that classifier. The outlines you can reveal come from the image generator: wsseg uses "
        "them to score its results, never to train.",
        "During training, what does wsseg know about this image?",
        (
            ("tags", "Only which classes appear in it (its tags)"),
            ("boxes", "A box around every shape"),
            ("masks", "The outline of every shape"),
        ),
    ),
    Step(
        "cam",
        "2 · Class activation maps",
        "The classifier ends with one map per class over a coarse grid (one cell per 8 x 8 pixels): "
        "the **class response map**, or class activation map (CAM). The image's score for a class is "
        "pooled from its map, so to predict a tag the network has to make that map respond where the "
        "evidence for the class is. Nobody showed it where the shapes are: the map shows what it "
        "found by itself. Pick a class the image is not tagged with, too.",
        "Where will the map of **{name}** be brightest?",
        (
            ("on_class", "On a {name}"),
            ("on_other", "On a shape of another class"),
            ("background", "On the background"),
            ("nowhere", "Nowhere: it stays weak everywhere"),
        ),
    ),
    Step(
        "methods",
        "3 · Two CAM methods, one image",
        "The class response map is one way to ask a classifier where it looked; there are others, and "
        "they disagree. **Grad-CAM** weighs the feature maps of a layer by how much the class score "
        "rises with each; **Score-CAM** masks the image with each feature map and keeps those that keep "
        "the score; **Eigen-CAM** takes the strongest pattern of the layer, whatever the class. The "
        "peaks that become objects come from the map you choose, so where a map points matters. Pick "
        "two methods and a class.",
        "Which map will point at a **{name}** (its brightest pixel on a {name})?",
        (
            ("both", "Both"),
            ("first", "Only {first}"),
            ("second", "Only {second}"),
            ("neither", "Neither"),
        ),
    ),
    Step(
        "peaks",
        "4 · Peaks: one per object",
        "A map can hold several objects of one class. PRM (peak response maps, Zhou et al. 2018) looks "
        "for **peaks**: cells that are the largest in a window around them and whose value passes a "
        "threshold (here a fraction of the map's maximum). Each peak should mark one object. A wider "
        "window merges nearby maxima; a higher threshold drops weak ones; smoothing removes ripples.",
        "With these settings, how will the peaks of **{name}** fall? The image holds {count} {name}(s).",
        (
            ("fewer", "Fewer peaks than {name}s"),
            ("same", "Exactly one peak on each {name}"),
            ("more", "More peaks than {name}s"),
            ("misplaced", "As many peaks as {name}s, but not one on each"),
        ),
    ),
    Step(
        "prm",
        "5 · Peak response maps",
        "From one peak, wsseg runs the network backwards: the peak's value is handed down layer by "
        "layer, each time shared among the inputs that pushed it up (excitation backpropagation), "
        "until it lands on pixels. This **peak response map** shows which pixels made that one peak "
        "fire: usually the single object under it, in finer detail than the coarse class map. The "
        "'gradient' method (WISE's) uses the plain input gradient instead.",
        "What will the peak response map of this peak light up?",
        (
            ("one", "The one {name} under the peak"),
            ("all", "Every {name} in the image"),
            ("whole", "Mostly pixels outside the {name}s"),
        ),
    ),
    Step(
        "proposals",
        "6 · Object proposals: candidate masks",
        "A peak response map says where an object is, not exactly where it ends. For crisp masks, "
        "wsseg cuts the image into small regions of similar colour and merges the most similar "
        "neighbours again and again, at several scales and in two colour spaces (**selective "
        "search**). Every region on the way is a candidate mask, ranked by how strong and closed its "
        "outline is. It knows nothing about classes: it proposes anything that looks like an object.",
        "Among the proposals, will each of the {count} shapes find a close match (IoU at least 0.5)?",
        (
            ("all", "Yes, every shape"),
            ("some", "Only some of the shapes"),
            ("none", "None of them"),
        ),
    ),
    Step(
        "pseudo",
        "7 · Pseudo masks: one proposal per peak",
        "Each peak now picks one proposal. The **PRM strategy** scores a proposal by the peak response "
        "inside it (alpha x inside), plus the response on its outline, minus a penalty for covering "
        "background, where the class map is weak (beta x background). The **WISE strategy** takes the "
        "proposal with the best objectness among those holding the peak. The chosen mask is a "
        "**pseudo mask**: a guessed label, sometimes wrong, that the next steps train on.",
        "What will the chosen mask be, compared with the {name} under the peak?",
        (
            ("fits", "It fits the {name} (IoU at least 0.5)"),
            ("too_big", "Too big: the {name} plus background or neighbours"),
            ("too_small", "Too small: only a part of the {name}"),
            ("none", "No proposal is chosen"),
        ),
    ),
    Step(
        "maskrcnn",
        "8 · Mask R-CNN learns from the pseudo masks",
        "The pseudo masks of many images are used as if they were true labels to train a standard "
        "instance segmentation network, **Mask R-CNN**. Seeing many images, it can average out the "
        "errors of single pseudo masks, and once trained it needs no classifier, peaks or proposals: "
        "one pass gives each object's class, score and mask. The model here is the small demo one "
        "shipped with wsseg, trained from scratch on pseudo masks of other shapes images; this image "
        "was not among them.",
        "With this score threshold, how many of the {count} shapes will it find (right class, mask "
        "IoU at least 0.5)?",
        (
            ("all", "All of them"),
            ("most", "At least half, not all"),
            ("few", "Fewer than half"),
        ),
    ),
    Step(
        "ple",
        "9 · Semantic masks: the pixel-label estimator",
        "The second method gives every pixel one label (background or a class) instead of separate "
        "objects. A fully convolutional network predicts, at each pixel, a probability for each "
        "label. In training, the image's tags are injected into that prediction, the **pixel-label "
        "estimate**: absent classes get zero, and each present class must win some pixels; the network "
        "learns to match that target. A neighbourhood loss makes each pixel agree with similar-looking "
        "neighbours, so labels follow edges. At test time no tags are needed. Two refinements: a dense "
        "CRF snaps the labels to colour edges, and a **self-training round** retrains the network on its "
        "own CRF-snapped labels of the training images (still tags only). The demo network shipped "
        "with wsseg learnt from tags only.",
        "How much of the **{name}** area will it label {name}?",
        (
            ("most", "Most of it (IoU at least 0.5)"),
            ("some", "Some of it (IoU 0.2 to 0.5)"),
            ("little", "Little or none (IoU below 0.2)"),
        ),
    ),
)

STEP_KEYS: tuple[str, ...] = tuple(step.key for step in STEPS)


def step(key: str) -> Step:
    """The step named ``key`` (one of ``STEP_KEYS``)."""
    for s in STEPS:
        if s.key == key:
            return s
    raise BadInputError(f"step={key!r}", f"expected one of {', '.join(STEP_KEYS)}")


def judge(lesson_step: Step, outcome: Outcome, answer: str | None, **values: object) -> Verdict:
    """Whether ``answer`` (a choice key) is what happened, and why; ``values`` fill the texts."""
    if answer is None:
        return Verdict(False, "No guess made. " + outcome.why)
    keys = [k for k, _ in lesson_step.choices]
    if answer not in keys:
        raise BadInputError(f"answer={answer!r}", f"expected one of {', '.join(keys)}")
    if answer == outcome.expected:
        return Verdict(True, f"Right. {outcome.why}")
    told = lesson_step.choice_text(outcome.expected, **values)
    return Verdict(False, f"Not this time: the answer is “{told}”. {outcome.why}")


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """HxW bool dilated by a (2 pixels + 1) square: a point on an outline counts as on the object."""
    if pixels <= 0:
        return mask
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def instance_at(
    truth: Instances, point: tuple[int, int], class_index: int | None = None, margin: int = 2
) -> int | None:
    """Index of the true instance (of ``class_index`` when given) holding the (y, x) ``point`` within
    ``margin`` pixels, or None."""
    y, x = point
    for k in range(len(truth)):
        if class_index is not None and int(truth.labels[k]) != class_index:
            continue
        if grow(truth.masks[k], margin)[y, x]:
            return k
    return None


def tags_outcome(tags: Sequence[str], truth: Instances) -> Outcome:
    return Outcome(
        "tags",
        f"Its only label is its tags ({', '.join(tags) or 'none'}). The {len(truth)} outline(s) now shown "
        "are the generator's ground truth: used to score the results, never to train.",
    )


def cam_outcome(
    pixel_crms: np.ndarray, class_index: int, truth: Instances, names: Sequence[str], weak: float = 0.3
) -> Outcome:
    """Where class ``class_index``'s map (float32 CxHxW raw CRMs at pixel size) peaks: on one of its
    true instances, on another class's, on the background; or "nowhere" when its maximum is not
    positive or below ``weak`` times the strongest class map's."""
    own = pixel_crms[class_index]
    name = names[class_index]
    top = float(pixel_crms.max())
    strength = float(own.max()) / top if top > 0 else 0.0
    if own.max() <= 0 or strength < weak:
        return Outcome(
            "nowhere",
            f"Its maximum is {max(strength, 0.0):.0%} of the strongest class map here: "
            + (
                f"the classifier sees no {name} in this image, and it is right."
                if class_index not in truth.labels
                else f"the classifier barely sees the {name} (its score stays low)."
            ),
        )
    y, x = np.unravel_index(int(np.argmax(own)), own.shape)
    hit = instance_at(truth, (int(y), int(x)))
    if hit is not None and int(truth.labels[hit]) == class_index:
        return Outcome(
            "on_class",
            f"Its maximum ({strength:.0%} of the strongest map) sits on a {name}: the classifier "
            f"learnt, from tags alone, to look at {name}s to say '{name}'.",
        )
    if hit is not None:
        other = names[int(truth.labels[hit])]
        return Outcome(
            "on_other",
            f"Its maximum sits on a {other}: parts of a {other} look like a {name} to this classifier"
            + (f" (there is no {name} here)." if class_index not in truth.labels else "."),
        )
    return Outcome(
        "background",
        f"Its maximum, at (y, x) = ({y}, {x}), is on the background: clutter there looks like a {name} "
        "to the classifier.",
    )


def methods_outcome(
    maps: Sequence[np.ndarray], labels: Sequence[str], class_index: int, truth: Instances, name: str
) -> Outcome:
    """Whether each of two methods' maps (float HxW) has its maximum on a true instance of class
    ``class_index`` (within 2 pixels): "both", "first", "second" or "neither"."""
    hits = []
    said = []
    for heat, label in zip(maps, labels, strict=True):
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        hit = instance_at(truth, (int(y), int(x)), class_index) is not None if heat.max() > 0 else False
        hits.append(hit)
        said.append(
            f"{label}'s brightest pixel, at (y, x) = ({y}, {x}), is {'on' if hit else 'not on'} a {name}"
        )
    expected = {(True, True): "both", (True, False): "first", (False, True): "second"}.get(
        tuple(hits), "neither"
    )
    return Outcome(expected, "; ".join(said) + ".")


def peaks_per_instance(
    points: Sequence[tuple[int, int]], truth: Instances, class_index: int, margin: int = 2
) -> tuple[list[int], int]:
    """(number of peaks on each true instance of class ``class_index``, in the order of ``truth``;
    number of peaks on none of them). A peak belongs to the instance whose mask holds it, else to one
    within ``margin`` pixels of it (a peak on an outline); never to two."""
    ours = [int(k) for k in np.flatnonzero(truth.labels == class_index)]
    counts = dict.fromkeys(ours, 0)
    stray = 0
    for point in points:
        y, x = point
        home = next((k for k in ours if truth.masks[k][y, x]), None)
        if home is None:
            home = instance_at(truth, point, class_index, margin)
        if home is None:
            stray += 1
        else:
            counts[home] += 1
    return [counts[k] for k in ours], stray


def peaks_outcome(
    points: Sequence[tuple[int, int]], truth: Instances, class_index: int, name: str
) -> Outcome:
    """Peaks of one class, (y, x) pixels, against its true instances: "same" only when every instance
    holds exactly one peak and no peak is off them; otherwise fewer or more peaks in all, or as many
    but not one on each ("misplaced")."""
    per, stray = peaks_per_instance(points, truth, class_index)
    count, found = len(per), len(points)
    figures = (
        f"{found} peak(s) for {count} {name}(s); peaks on each {name}: {', '.join(map(str, per)) or '-'}"
        + (f"; {stray} off every {name}." if stray else ".")
    )
    if found < count:
        return Outcome(
            "fewer",
            f"{figures} A window wider than the gap between two objects, or a threshold above a weak "
            "object's response, merges or drops peaks.",
        )
    if found > count:
        return Outcome(
            "more",
            f"{figures} A large object can give two maxima (so can the points of a star), and a low "
            "threshold lets clutter through.",
        )
    if any(n != 1 for n in per) or stray:
        wrong = [f"a {name} holds {max(per)} peaks"] if max(per, default=0) > 1 else []
        wrong += [f"{per.count(0)} {name}(s) hold none"] if per.count(0) else []
        wrong += [f"{stray} peak(s) sit off every {name}"] if stray else []
        return Outcome(
            "misplaced",
            f"{figures} The count is right, but {' and '.join(wrong)}: counting peaks is not the same "
            "as finding the objects.",
        )
    return Outcome("same", f"{figures} Each {name} got its own peak.")


def prm_outcome(
    prm: np.ndarray, point: tuple[int, int], truth: Instances, class_index: int, name: str, margin: int = 3
) -> Outcome:
    """Where the mass of a peak's PRM (float HxW >= 0) lies: on the instance under the peak, on the
    class's other instances, or elsewhere (instances grown by ``margin`` pixels)."""
    total = float(prm.sum())
    if total <= 0:
        return Outcome("whole", "The map is empty: no pixel pushed this peak up.")
    mine = instance_at(truth, point, class_index)
    own = others = 0.0
    for k in np.flatnonzero(truth.labels == class_index):
        share = float(prm[grow(truth.masks[k], margin)].sum()) / total
        own, others = (own + share, others) if k == mine else (own, others + share)
    rest = max(0.0, 1.0 - own - others)
    figures = (
        f"{own:.0%} of its mass lies on the {name} under the peak, {others:.0%} on the other {name}s, "
        f"{rest:.0%} elsewhere."
    )
    if own >= others and own >= 0.25:
        return Outcome("one", f"{figures} Backwards from one peak, the evidence leads to one object.")
    if others > own and others >= 0.25:
        return Outcome(
            "all", f"{figures} This peak drew on several objects (peaks close together share them)."
        )
    return Outcome("whole", f"{figures} The evidence for this peak is spread beyond the objects.")


def proposals_outcome(proposals: np.ndarray, truth: Instances) -> Outcome:
    """Best IoU of the proposals (KxHxW bool) with each true instance."""
    best = best_overlaps(proposals, truth.masks)
    good = int((best >= 0.5).sum())
    figures = (
        f"{len(proposals)} proposals; the best match of each shape has IoU "
        f"{', '.join(f'{v:.2f}' for v in best) or '-'}."
    )
    if len(truth) and good == len(truth):
        return Outcome(
            "all", f"{figures} The right mask is among the candidates: the hard part is picking it."
        )
    if good:
        return Outcome("some", f"{figures} {good} of {len(truth)} shapes have a close candidate.")
    return Outcome("none", f"{figures} No candidate fits a shape well.")


def pseudo_mask_outcome(
    mask: np.ndarray | None, point: tuple[int, int], truth: Instances, class_index: int, name: str
) -> Outcome:
    """The chosen mask against the instance under the peak (else the class's instance it overlaps
    most)."""
    if mask is None:
        return Outcome("none", "No proposal was usable for this peak (all outside the area limits).")
    target = instance_at(truth, point, class_index)
    ours = np.flatnonzero(truth.labels == class_index)
    if target is None and len(ours):
        target = int(ours[np.argmax(mask_iou(mask[None], truth.masks[ours])[0])])
    if target is None:
        return Outcome("too_big", f"There is no {name} in this image: any mask for this peak is wrong.")
    iou = float(mask_iou(mask[None], truth.masks[target][None])[0, 0])
    ratio = float(mask.sum()) / max(1, int(truth.masks[target].sum()))
    figures = f"The mask overlaps the {name} with IoU {iou:.2f} and is {ratio:.1f} times its area."
    if iou >= 0.5:
        return Outcome("fits", f"{figures} A good pseudo mask.")
    if ratio > 1:
        return Outcome("too_big", f"{figures} It spills over: try a larger beta (background penalty).")
    return Outcome("too_small", f"{figures} It covers only a part: try a smaller beta or a larger alpha.")


def detection_outcome(
    predicted: Instances, truth: Instances, score_threshold: float, iou: float = 0.5
) -> Outcome:
    """Mask R-CNN's kept predictions (score >= ``score_threshold``) against the true instances."""
    keep = predicted.scores >= score_threshold
    masks, labels = predicted.masks[keep], predicted.labels[keep]
    found, used = 0, np.zeros(len(labels), bool)
    overlaps = mask_iou(truth.masks, masks) if len(truth) and len(labels) else np.zeros((len(truth), 0))
    for k in range(len(truth)):
        ok = (labels == truth.labels[k]) & ~used & (overlaps[k] >= iou)
        if ok.any():
            used[np.flatnonzero(ok)[np.argmax(overlaps[k][ok])]] = True
            found += 1
    figures = (
        f"At threshold {score_threshold:.2f} it keeps {len(labels)} mask(s) and finds {found} of the "
        f"{len(truth)} shapes; {int((~used).sum())} of its masks match no shape."
    )
    if len(truth) and found == len(truth):
        return Outcome("all", figures)
    if found * 2 >= len(truth):
        return Outcome("most", figures)
    return Outcome("few", figures + " A lower threshold keeps more, at the cost of false ones.")


def semantic_outcome(predicted: np.ndarray, truth: np.ndarray, label: int, name: str) -> Outcome:
    """IoU of label ``label`` between two HxW integer label maps."""
    a, b = predicted == label, truth == label
    union = int(np.logical_or(a, b).sum())
    iou = float(np.logical_and(a, b).sum()) / union if union else 0.0
    figures = (
        f"IoU of '{name}' on this image: {iou:.2f} ({int(a.sum())} pixels labelled, {int(b.sum())} true)."
    )
    if iou >= 0.5:
        return Outcome("most", figures)
    if iou >= 0.2:
        return Outcome("some", figures)
    return Outcome("little", figures)
