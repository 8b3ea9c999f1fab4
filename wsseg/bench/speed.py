"""Speed measurements for the benchmark: each a ratio or time measured in one run, on this machine."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from skimage.segmentation import felzenszwalb
from torch import nn

from wsseg.bench.timing import best_time, best_times
from wsseg.methods import prm, proposals
from wsseg.methods.prm import PRMConfig, peak_response_maps, peak_response_maps_naive
from wsseg.methods.proposals import ProposalConfig, selective_search
from wsseg.models.cam_models import CamModel
from wsseg.models.classifier import PeakClassifier
from wsseg.models.peaks import PeakConfig, global_average_pooling, peak_stimulation
from wsseg.views.cam import ImageMaps, PeakSettings, class_peaks
from wsseg.views.cam_compare import MethodMap, OpenedModel, with_peaks
from wsseg.views.overlay import OverlayStyle, crm_to_pixels, greyed, jpeg_bytes, normalize, overlay_view


def measure_prm_speed(
    model: PeakClassifier, image: torch.Tensor, n_repeat: int = 3, cfg: PRMConfig | None = None
) -> dict[str, float]:
    """Time ratios for one image, each time the best of ``n_repeat`` runs after a warm-up.

    The unit is one forward and backward of a training step on this image (eval mode: the
    classifier's forward with its PSL, the multilabel loss, gradients of every parameter).
    Returns ``num_peaks`` (K), ``batched`` (``peak_response_maps`` for all K peaks / unit) and
    ``naive`` (``peak_response_maps_naive``, one backward per peak / unit).
    """
    image = prm.check_image(image)
    params = [p for p in model.parameters() if p.requires_grad]

    def unit() -> None:
        with prm.EvalMode(model), torch.enable_grad():
            out = model(image)
            loss = model.loss(out, torch.ones_like(out["logits"]))["classification"]
            torch.autograd.grad(loss, params)

    times = best_times(
        {
            "unit": unit,
            "batched": lambda: peak_response_maps(model, image, cfg),
            "naive": lambda: peak_response_maps_naive(model, image, cfg),
        },
        n_repeat,
    )
    num_peaks = len(peak_response_maps(model, image, cfg).peaks)
    return {
        "num_peaks": float(num_peaks),
        "batched": times["batched"] / times["unit"],
        "naive": times["naive"] / times["unit"],
    }


def measure_psl_speed(model: PeakClassifier, images: torch.Tensor, n_repeat: int = 5) -> float:
    """Ratio (forward with the PSL) / (forward with global average pooling), eval mode, no grad."""
    was_training = model.training
    model.eval()
    cfg = model.config.peaks
    try:
        with torch.no_grad():
            model.class_response_maps(images)  # warm-up
            plain = best_time(lambda: global_average_pooling(model.class_response_maps(images)), n_repeat)
            psl = best_time(lambda: peak_stimulation(model.class_response_maps(images), cfg), n_repeat)
    finally:
        model.train(was_training)
    return psl / plain


def measure_proposal_speed(image: np.ndarray, config: ProposalConfig | None = None, repeats: int = 3) -> dict:
    """Seconds of :func:`selective_search` and of one felzenszwalb call (first scale, RGB), best of repeats.

    Returns {"selective_search_s", "felzenszwalb_s", "ratio", "proposals"}.
    """
    config = config or ProposalConfig()
    image = proposals.check_image(image)

    def best(fn) -> float:
        return best_time(fn, repeats, warmup=False)

    fz = best(
        lambda: felzenszwalb(image, scale=config.scales[0], sigma=config.sigma, min_size=config.min_size)
    )
    ss = best(lambda: selective_search(image, config))
    return {
        "selective_search_s": ss,
        "felzenszwalb_s": fz,
        "ratio": ss / fz,
        "proposals": len(selective_search(image, config)),
    }


def measure_overlay_ms(size: int = 256, num_classes: int = 4, stride: int = 8, repeat: int = 20) -> float:
    """Milliseconds (median of ``repeat``) of the CAMs page's pictures when an overlay control moves.

    On a synthetic size x size image with ``num_classes`` CRMs of stride ``stride`` (seeded values):
    find the first class's peaks on the cached CRMs (``class_peaks`` with the page's default
    ``PeakSettings``), map every class's CRM to pixels, and draw and JPEG-encode what the viewer
    sends: the class's overlay with numbered peaks, the chosen peak's PRM overlay (its map cached) and
    the small overlay of every class. The model is not run: the page caches its maps (or reads them
    from the peaks artifacts). Streamlit's own work around the pictures is not included; the page
    shows its full server time in a caption.
    """
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    cells = -(-size // stride)
    yy, xx = np.mgrid[0:cells, 0:cells].astype(np.float32)
    crm = np.stack(
        [
            sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0) for cy, cx in rng.uniform(0, cells, (3, 2)))
            for _ in range(num_classes)
        ]
    ).astype(np.float32)
    maps = ImageMaps(
        image=image,
        crm=crm,
        class_scores=crm.mean(axis=(1, 2)),
        stride=stride,
        upsample=PeakConfig().upsample,
        source="synthetic",
        stored_peaks=np.zeros((0, 4), np.float32),
        stored_prms=np.zeros((0, size, size), np.float32),
    )
    settings = PeakSettings()
    style = OverlayStyle()
    prm = np.exp(
        -((np.arange(size)[:, None] - size / 2) ** 2 + (np.arange(size)[None] - size / 2) ** 2) / 50.0
    )
    timings = []
    with torch.inference_mode():
        for _ in range(repeat + 1):
            start = time.perf_counter()
            mine = [(p.y, p.x) for p in class_peaks(maps, settings, 0)]
            heats = [normalize(crm_to_pixels(c, stride, (size, size)), float(crm.max())) for c in crm]
            jpeg_bytes(overlay_view(image, heats[0], style, mine, selected=0))
            jpeg_bytes(overlay_view(image, normalize(prm), style, mine[:1], selected=0))
            for heat in heats:
                jpeg_bytes(overlay_view(image, heat, style, target=200))
            timings.append(time.perf_counter() - start)
    return float(np.median(timings[1:]) * 1000.0)


def measure_compare_ms(size: int = 256, methods: int = 7, stride: int = 8, repeat: int = 10) -> float:
    """Milliseconds (median of ``repeat``) of the CAMs page's method comparison when a control moves,
    its maps cached: each of ``methods`` synthetic size x size maps gets its peaks found again
    (``with_peaks``, the page's default settings) and is drawn and JPEG-encoded as the page sends it."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    heats = []
    for _ in range(methods):
        cy, cx = rng.uniform(0, size, 2)
        heats.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 30.0**2)).astype(np.float32))
    model = CamModel(nn.Identity(), ["a"], {"x": nn.Identity()}, "x", stride, None, "synthetic")
    opened = OpenedModel(model, None, PeakConfig())
    found = [MethodMap("gradcam", "Grad-CAM", heat, [], 0.0) for heat in heats]
    backdrop = greyed(image)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for one in found:
            shown = with_peaks(one, opened, 0, PeakSettings())
            jpeg_bytes(
                overlay_view(
                    backdrop, shown.heat, OverlayStyle(), [(p.y, p.x) for p in shown.peaks], target=320
                )
            )
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)
