"""Every measured default in one place: the inference peaks and the benchmark's recipes.

The config dataclasses of the lower layers (``PeakConfig``, ``PRMConfig``, ``RetrievalConfig``,
``ClassifierConfig``, ``MaskRCNNConfig``, ``TrainConfig``...) keep the papers' defaults. What was
measured to work better here lives below, built from them, and the command line (``wsseg peaks``,
``wsseg bench``), the app's pages (``wsseg.views.cam.PeakSettings``), the demo and the benchmark all read
it. docs/benchmark.md holds the figures behind each choice.

"Off" is None everywhere: a peak filter set to None is not applied. Where a control needs a number
(a page's slider at 0, the command line's ``off``), it is turned into None at that control.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from wsseg.methods.crf import CRFConfig
from wsseg.methods.prm import PRMConfig
from wsseg.methods.pseudo_masks import RetrievalConfig
from wsseg.models.classifier import ClassifierConfig
from wsseg.models.maskrcnn import MaskRCNNConfig
from wsseg.training.datasets import Augment
from wsseg.training.engine import TrainConfig

# ---------------------------------------------------------------- inference peaks


@dataclass(frozen=True)
class InferencePeaks:
    """Which local maxima of a CRM count as instances at inference (``wsseg.models.peaks.find_peaks``),
    and how their peak response maps are computed. None turns a filter off.

    method: the PRM formulation, a key of ``wsseg.methods.prm.METHODS`` (PRM's own by default).
    class_threshold: minimum class score (logit) for a class to get peaks. None: every class. The
        pseudo-mask stage keeps the image's tagged classes itself and the classifier's evaluation
        scores the tagged ones, so a score threshold would only drop tagged classes the classifier
        scores low (the benchmark's figures are measured without one).
    peak_threshold: minimum raw response (0: the map says "more likely this class than not" there).
    relative_threshold: minimum fraction of the class map's maximum in that image. 0.3 keeps the
        fainter second instance of a class, which 0.5 drops (docs/benchmark.md, "The receptive field
        was the answer").
    smooth: Gaussian blur (std in CRM cells) before the search, against single-cell ripples that
        each became a peak (docs/benchmark.md).
    scale: each image is enlarged this many times before the classifier (``make_peaks``'s ``scale``).
        ``plan_for`` enlarges nuclei tiles 2x: touching nuclei share a cell of the stride-8 map at
        their own size (docs/benchmark.md, "Nuclei").
    """

    method: str = PRMConfig.method
    class_threshold: float | None = None
    peak_threshold: float | None = 0.0
    relative_threshold: float | None = 0.3
    smooth: float | None = 1.0
    scale: float = 1.0

    def prm_config(self) -> PRMConfig:
        """These settings as the peaks stage's config (``wsseg.stages.make_peaks.make_peaks``)."""
        return PRMConfig(
            method=self.method,
            class_threshold=self.class_threshold,
            peak_threshold=self.peak_threshold,
            relative_threshold=self.relative_threshold,
            smooth=self.smooth,
        )


INFERENCE_PEAKS = InferencePeaks()

# ---------------------------------------------------------------- image sizes

#: The longest side, in pixels, at which the per-image stages work (peaks, proposals, pseudo masks). A
#: larger image (a 4000x3000 phone photo, an aerial or microscopy scan) is downscaled for the stage's
#: work; its original is stored untouched and every mask the stages store is at its stored size
#: (proposals are upscaled back before they are written, pseudo masks chosen among them likewise).
#: Measured on a 2-core machine under load: selective search takes 0.32 GB and 15 s at 512 px, 0.51 GB
#: and 54 s at 768, 0.95 GB and 115 s at 1024 (at 6000x6000 it held 12 GB for 3 minutes, then ran out
#: of memory); PRMs of the demo classifier on a 1024 px image with 141 peaks: 2.0 GB resident in all
#: (3.2 GB before they were computed 16 seeds at a time). The classifier's training size
#: (``train-classifier --size``) and ``--scale`` apply first; this bound last.
WORKING_SIDE = 1024

# ---------------------------------------------------------------- pseudo masks

#: Retrieval variants the benchmark scores (``pseudo_masks.<name>``): name -> changes to the default
#: ``RetrievalConfig``. "prm" and "wise" are the two strategies as published (the WISE point is the PRM's
#: argmax); the "_peak" rows use the peak itself as the point, and "prm_peak_inside" also keeps PRM
#: retrieval to proposals holding it.
RETRIEVAL_VARIANTS: dict[str, dict[str, Any]] = {
    "prm": {"strategy": "prm", "point": "prm_argmax", "contain_point": False},
    "wise": {"strategy": "wise", "point": "prm_argmax"},
    "wise_peak": {"strategy": "wise", "point": "peak"},
    "prm_peak_inside": {"strategy": "prm", "point": "peak", "contain_point": True},
}


def retrieval_variant(name: str) -> RetrievalConfig:
    """The default retrieval config with the changes of ``RETRIEVAL_VARIANTS[name]``."""
    return dataclasses.replace(RetrievalConfig(), **RETRIEVAL_VARIANTS[name])


# ---------------------------------------------------------------- training schedules

COLOUR_FREE = Augment(flips=True, hflip=False, colour=True)
"""Flips, 90-degree turns and colour permutation: shapes (random colours) and nuclei (stains of several
colours) depend on neither orientation nor colour."""
HFLIP_ONLY = Augment(flips=False, hflip=True, colour=False)
"""Street scenes (CamVid) only flip horizontally."""


def classifier_config(num_classes: int) -> ClassifierConfig:
    """The classifier every recipe trains: the small backbone with global average pooling (plain CAM),
    peaks found at inference. Training through the peak stimulation layer learnt slower on shapes with
    the same steps, and its peaks were no better (docs/benchmark.md, "Global pooling first")."""
    return ClassifierConfig(num_classes=num_classes, backbone="small", peak_stimulation=False)


def classifier_schedule(epochs: int, seed: int = 0) -> TrainConfig:
    """The classifier's optimisation: AdamW one-cycle to 3e-3, batch 32."""
    return TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, seed=seed)


def maskrcnn_schedule(epochs: int, seed: int = 0, lr: float = 2e-3) -> TrainConfig:
    """Mask R-CNN's optimisation: AdamW one-cycle to ``lr`` (2e-3 from scratch), batch 8."""
    return TrainConfig(epochs=epochs, batch_size=8, lr=lr, seed=seed)


PRETRAINED_LR = 5e-4
"""Peak learning rate of every network that starts from pretrained weights: the from-scratch 2e-3 and
3e-3 would wash out what the weights know in the first hundred steps."""


@dataclass(frozen=True)
class Start:
    """A pretrained start of the benchmark's networks: ``backbone`` (a torchvision backbone of
    ``wsseg.models.backbones.BACKBONES`` that Mask R-CNN also takes: ``mobilenet_v2``, ``mobilenet_v3``,
    ``resnet50``) and ``weights``, a weights file or a torchvision weight name
    (``wsseg.models.backbones``). The classifier starts from it; the estimator's networks from the
    classifier (as from scratch); both Mask R-CNNs from the weights themselves, their BatchNorm frozen.
    ``frozen_backbone``: the classifier trains only its head on the weights' features."""

    backbone: str
    weights: str
    frozen_backbone: bool = False


# ---------------------------------------------------------------- the benchmark's plans

COCO_SIDE = 320
"""The longer side, in pixels, of the COCO bench's photos (``wsseg.bench.data``) and the classifier's
square input there: selective search on the 640 px originals costs ~15 CPU s a photo."""


@dataclass(frozen=True)
class MaskRCNNPlan:
    """Model, schedule and data of the benchmark's Mask R-CNN trainings. ``max_images``: the first N
    training images only. ``init``: the classifier whose layers start them (``train_maskrcnn``'s
    ``init``), or None."""

    model: MaskRCNNConfig
    train: TrainConfig
    augment: Augment = COLOUR_FREE
    max_images: int | None = None
    init: str | None = None


def start_config(
    num_classes: int, init: str | None, width: int, start: Start | None = None
) -> MaskRCNNConfig:
    """The benchmark's Mask R-CNN: with ``start``, its backbone and weights (BatchNorm frozen, as
    torchvision's pretrained detectors); else with ``init``, the small backbone at the classifier's width
    with RoIAlign at one sample per bin (RoIAlign's backward was the largest share of a CPU step;
    docs/benchmark.md, "Where a step goes"); without either, the default MobileNetV3-FPN from scratch."""
    if start is not None:
        return MaskRCNNConfig(
            num_classes=num_classes, backbone=start.backbone, weights=start.weights, roi_sampling_ratio=1
        )
    if init is None:
        return MaskRCNNConfig(num_classes=num_classes)
    return MaskRCNNConfig(num_classes=num_classes, backbone="small", small_width=width, roi_sampling_ratio=1)


def maskrcnn_plan(
    quick: bool,
    num_classes: int,
    seed: int,
    init: str | None = None,
    width: int = MaskRCNNConfig.small_width,
    epochs: int | None = None,
    max_images: int | None = None,
    start: Start | None = None,
    model: dict[str, Any] | None = None,
    augment: Augment = COLOUR_FREE,
) -> MaskRCNNPlan:
    """The benchmark's Mask R-CNN recipe (docs/benchmark.md). With ``start``: its pretrained backbone at
    ``PRETRAINED_LR`` (``init`` unused). Else with ``init`` (the benchmark's classifier, of ``small_width``
    ``width``): the small backbone started from it, 1,500 images x 3 epochs. Without: MobileNetV3 from
    scratch, 6 epochs. ``quick``: 64 images x 2 epochs, a few minutes. ``epochs`` and ``max_images``
    replace the recipe's (``BenchPlan.maskrcnn_epochs`` and ``maskrcnn_images``); ``model`` changes
    fields of its ``MaskRCNNConfig`` (``BenchPlan.maskrcnn_model``); ``augment``: the training
    images' (the run's ``BenchPlan.augment``)."""
    init = None if start is not None else init
    config = dataclasses.replace(start_config(num_classes, init, width, start), **(model or {}))
    if quick:
        default_epochs, default_images = 2, 64
    else:
        default_epochs, default_images = (6 if init is None and start is None else 3), 1500
    lr = PRETRAINED_LR if start is not None else maskrcnn_schedule(1).lr
    return MaskRCNNPlan(
        config,
        maskrcnn_schedule(default_epochs if epochs is None else epochs, seed, lr),
        augment=augment,
        max_images=default_images if max_images is None else max_images,
        init=init,
    )


@dataclass(frozen=True)
class BenchPlan:
    """Sizes and schedule of one benchmark run. ``quick`` finishes in minutes on 2 CPU cores."""

    train_images: int
    val_images: int
    classifier: ClassifierConfig
    train: TrainConfig
    size: int | None = None
    augment: Augment = COLOUR_FREE
    ple: bool = False
    """Also run the pixel-label estimator's benchmark (``wsseg.bench.ple``; shapes and camvid)."""
    maskrcnn: MaskRCNNPlan | None = None
    """None: ``maskrcnn_plan`` for the run."""
    pseudo_every: int = 1
    """Peaks, proposals and pseudo masks run on every n-th training image (the weak Mask R-CNN's data)."""
    peak_scale: float = INFERENCE_PEAKS.scale
    """The inference peaks' enlargement (``InferencePeaks.scale``)."""
    pseudo_variant: str = "prm_peak_inside"
    """The row of ``RETRIEVAL_VARIANTS`` whose pseudo masks the weak Mask R-CNN learns from."""
    maskrcnn_epochs: int | None = None
    """Both Mask R-CNNs' epochs (None: ``maskrcnn_plan``'s)."""
    maskrcnn_images: int | None = None
    """Both Mask R-CNNs' training images (None: ``maskrcnn_plan``'s)."""
    maskrcnn_model: dict[str, Any] | None = None
    """Fields of both Mask R-CNNs' ``MaskRCNNConfig`` that differ from ``maskrcnn_plan``'s (None: none)."""
    start: Start | None = None
    """The pretrained start of the classifier and both Mask R-CNNs (None: from scratch)."""
    shipped_classifier: bool = False
    """Start from the shipped demo classifier (``wsseg.demo.project.DEMO_CHECKPOINT``: this module's
    shapes classifier recipe at 30 epochs, on other shapes images) instead of training one;
    ``classifier`` and ``train`` are then unused. Shapes only: it knows the four shapes and nothing else."""


def pretrained_schedule(epochs: int, seed: int = 0) -> TrainConfig:
    """A classifier's optimisation from a pretrained start: AdamW one-cycle to ``PRETRAINED_LR``, batch 16
    (the small sets this start is for, COCO's 65 training photos, give 4 steps an epoch at batch 16)."""
    return TrainConfig(epochs=epochs, batch_size=16, lr=PRETRAINED_LR, seed=seed)


def plan_for(dataset: str, quick: bool, num_classes: int, seed: int, start: Start | None = None) -> BenchPlan:
    """The benchmark's recipe for ``dataset`` (docs/benchmark.md says what was tried and why this).

    With ``start`` the same data, sizes and Mask R-CNN epochs; the classifier is ``start``'s backbone
    from its weights (global average pooling, as from scratch), trained ``pretrained_schedule``: 40
    epochs on COCO's few photos, 15 elsewhere, 3 quick (a pretrained network needs a fraction of the
    from-scratch steps)."""
    plan = _scratch_plan(dataset, quick, num_classes, seed)
    if start is None:
        return plan
    classifier = dataclasses.replace(
        plan.classifier,
        backbone=start.backbone,
        weights=start.weights,
        frozen_backbone=start.frozen_backbone,
    )
    epochs = 3 if quick else (40 if dataset == "coco" else 15)
    return dataclasses.replace(
        plan,
        classifier=classifier,
        train=pretrained_schedule(epochs, seed),
        start=start,
        shipped_classifier=False,
    )


def _scratch_plan(dataset: str, quick: bool, num_classes: int, seed: int) -> BenchPlan:
    classifier = classifier_config(num_classes)
    ple = dataset in ("shapes", "camvid")
    # Nuclei: peaks on tiles enlarged twice (twice the nuclei found, same precision) and WISE's choice
    # (the most object-like proposal holding the PRM's argmax), which beat PRM retrieval there
    # (docs/benchmark.md, "Nuclei").
    nuclei = {"peak_scale": 2.0, "pseudo_variant": "wise"} if dataset == "nuclei" else {}
    if dataset == "coco":
        # 98 photos, split inside the bench (``wsseg.bench.data``), stored at 320 px on their longer
        # side and squared to 320 for the classifier; street and room photos only flip horizontally.
        # Mask R-CNN 20 epochs: its ~65 training photos make 9 steps an epoch. It sees them at their
        # stored size (shorter side 240, not the 160 px the shapes recipe shrinks to), with anchors
        # twice the shapes recipe's: a photo's objects span 10 to 320 px.
        return BenchPlan(
            100_000,
            100_000,
            classifier,
            classifier_schedule(15 if quick else 40, seed),
            size=COCO_SIDE,
            augment=HFLIP_ONLY,
            maskrcnn_epochs=4 if quick else 20,
            maskrcnn_model={"image_size": 240, "anchor_sizes": ((32,), (64,), (128,), (256,))},
        )
    if quick and dataset == "shapes":
        # Under 5 minutes on 2 CPU cores with every downstream stage measured for real: the shipped
        # demo classifier (this recipe's at 30 epochs, on other shapes images) replaces the 375 steps a
        # from-scratch classifier could afford, which reached a tag mAP of 0.59 and left pseudo masks
        # and Mask R-CNN near zero. Its budget goes to the stages after it: peaks, proposals and
        # pseudo masks of 80 images (~1.2 CPU s an image), both Mask R-CNNs from its backbone on those
        # 80 images x 6 epochs (60 steps on the true masks: mAP50 0.50, and 0.37 on the pseudo masks;
        # 5 epochs gave 0.29 and 0.24). 237 s end to end on 2 idle cores (docs/benchmark.md,
        # "The quick run").
        return BenchPlan(
            160,
            100,
            classifier,
            classifier_schedule(15, seed),
            ple=ple,
            pseudo_every=2,
            maskrcnn_epochs=6,
            maskrcnn_images=80,
            shipped_classifier=True,
        )
    if quick:
        # Under 5 minutes on 2 CPU cores, every stage trained and measured for real (a small scale:
        # its figures show the pipeline works, not what the full schedule reaches). No shipped
        # classifier knows these classes, so it trains from scratch and gets most of the budget: it
        # learns nothing measurable before a few hundred steps (docs/benchmark.md, "The quick run").
        return BenchPlan(
            800, 100, classifier, classifier_schedule(15, seed), ple=ple, pseudo_every=8, **nuclei
        )
    if dataset == "shapes":
        # 46 epochs: twice the steps of the first recipe; the 57 px backbone kept improving to 69 but
        # 69 costs ~40 min on 2 CPU cores. Pseudo masks on every 2nd image: the 1,500 the Mask R-CNN
        # trainings use (docs/benchmark.md, "The full run's budget").
        return BenchPlan(3000, 300, classifier, classifier_schedule(46, seed), ple=ple, pseudo_every=2)
    # Every tile or crop. Nuclei: Mask R-CNN 8 epochs (~540 steps, as on shapes); at 3 the upper bound
    # stayed weak (docs/benchmark.md, "Nuclei").
    return BenchPlan(
        100_000,
        100_000,
        classifier,
        classifier_schedule(40, seed),
        ple=ple,
        maskrcnn_epochs=8 if dataset == "nuclei" else None,
        **nuclei,
    )


ROUNDS = 5
"""The pixel-label estimator and four self-training rounds: on shapes each round lifted mIoU
(docs/benchmark.md, "Self-training rounds")."""


@dataclass(frozen=True)
class PLEBenchPlan:
    """Schedule shared by the pixel-label estimator benchmark's networks; ``val_images`` caps the scored
    images (None: all)."""

    train: TrainConfig
    augment: Augment | None
    val_images: int | None = None
    max_images: int | None = None
    """Train on the first this many training images (None: all)."""
    crf: CRFConfig = CRFConfig()  # noqa: RUF009 (frozen)
    rounds: int = ROUNDS
    """Weak rounds: 1 is the estimator alone, each further one a self-training round on the last."""
    full_train: TrainConfig | None = None
    """The fully supervised upper bound's schedule (None: ``train``): longer where ``train`` leaves its
    validation curve still rising, since a weak/full ratio over an unfinished upper bound flatters the
    weak arm."""


def ple_plan(dataset: str, quick: bool, seed: int) -> PLEBenchPlan:
    """The benchmark's PLE recipe (docs/benchmark.md)."""
    # shapes: 5 epochs over 1,500 images; at 2 the fully supervised upper bound was still weak, which
    # flattered the ratio (docs/benchmark.md, "At the bench's full schedule").
    epochs = 1 if quick else (5 if dataset == "shapes" else 6)
    augment = COLOUR_FREE if dataset == "shapes" else HFLIP_ONLY
    # Self-training rounds lifted mIoU on shapes and lowered it on CamVid (the CRF-snapped labels of
    # 160 px street crops lose the thin classes), so CamVid keeps the estimator alone (docs/benchmark.md).
    rounds = ROUNDS if dataset == "shapes" else 1
    if quick and dataset == "shapes":
        # The estimator alone, 2 epochs over the quick plan's 160 training images (20 steps). Each
        # self-training round's CRF-refined labels cost ~0.3 CPU s an image: four rounds over 200
        # images took more than the whole 5-minute budget, and one round over 160 (~70 CPU s) lowered
        # mIoU at this schedule, 0.273 -> 0.246 (docs/benchmark.md, "The quick run").
        train = TrainConfig(epochs=2, batch_size=16, lr=3e-3, seed=seed)
        return PLEBenchPlan(train, augment, val_images=40, max_images=200, rounds=1)
    train = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, seed=seed)
    if quick:
        return PLEBenchPlan(train, augment, val_images=50, max_images=200, rounds=rounds)
    # CamVid's upper bound was still rising after 6 epochs (0.397, 0.415, 0.418 over the last three,
    # docs/reports/camvid-pretrained-mobilenet_v2.md): it trains 16, about 30 minutes on 2 idle cores.
    full_train = dataclasses.replace(train, epochs=16) if dataset == "camvid" else None
    return PLEBenchPlan(
        train,
        augment,
        max_images=1500 if dataset == "shapes" else None,
        rounds=rounds,
        full_train=full_train,
    )


@dataclass(frozen=True)
class CurationPlan:
    """The curation benchmark's recipe. ``bench``: data sizes and classifier (unused with
    ``--project``); ``shard``: the training images given pseudo masks; ``maskrcnn``: the one model and
    schedule of the three trainings, on the run's first ``maskrcnn.max_images`` images with masks (all
    when None), whose masks alone are reviewed: N = ``review_fraction`` of their automatic masks."""

    bench: BenchPlan
    shard: tuple[int, int]
    review_fraction: float
    maskrcnn: MaskRCNNPlan
    workers: int = 2


def curation_plan(dataset: str, quick: bool, num_classes: int, seed: int) -> CurationPlan:
    """The recipe (docs/benchmark.md, "Curation pays off, measured", gives the time budget behind it).

    Full: the benchmark's classifier recipe, pseudo masks of a quarter of the training images (750),
    N = 20% of their masks, Mask R-CNN 5 epochs over at most 750 images three times. Quick: 240
    training and 40 validation images, a short classifier, pseudo masks of 120 images and one Mask
    R-CNN epoch: minutes, the Mask R-CNN figures near zero. The Mask R-CNN is MobileNetV3-FPN from
    scratch until ``wsseg.bench.curation_run.with_classifier_start`` starts it from the classifier,
    once that exists.
    """
    model = MaskRCNNConfig(num_classes=num_classes)
    if quick:
        classifier = plan_for(dataset, True, num_classes, seed)
        bench = dataclasses.replace(
            classifier,
            train_images=240,
            val_images=40,
            train=classifier_schedule(8, seed),
            shipped_classifier=False,  # the curation bench trains its own
        )
        return CurationPlan(bench, (0, 2), 0.2, MaskRCNNPlan(model, maskrcnn_schedule(1, seed)))
    full = plan_for(dataset, False, num_classes, seed)
    return CurationPlan(full, (0, 4), 0.2, MaskRCNNPlan(model, maskrcnn_schedule(5, seed), max_images=750))
