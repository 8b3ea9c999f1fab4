"""The GPU path measured against the CPU in one run (``wsseg bench --scale``, its ``devices`` key).

On every device this machine has (the CPU, and each CUDA GPU torch sees) three units of work, each
through the product's own code: a classifier epoch (``wsseg.training.engine.train``: its data loader,
pinned memory and mixed precision on a GPU) of 64 synthetic 256 px images at batch 16; the peak
response maps of 64 peaks of one 448 px image, computed at once (``peak_response_maps``); and a Mask R-CNN training
step (MobileNetV3-FPN from scratch, two 256 px images of three objects, through ``train``). Each is the
median of its repeats after a warm-up; ``ratios`` are CPU time over GPU time. Where no GPU is visible
only the CPU's times are reported, with ``gpu: false``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from wsseg.methods.prm import PRMConfig, peak_response_maps
from wsseg.models.classifier import ClassifierConfig, PeakClassifier
from wsseg.models.maskrcnn import MaskRCNNConfig, build_maskrcnn, to_model_input
from wsseg.stages.train_classifier import classifier_loss
from wsseg.stages.train_maskrcnn import maskrcnn_loss
from wsseg.training.device import device_option
from wsseg.training.engine import TrainConfig, train

#: The peaks whose maps the PRM unit computes at once (an untrained classifier has a peak nearly
#: everywhere; a trained one on a photo keeps a few dozen).
PRM_PEAKS = 64


def _median_seconds(work: Callable[[], Any], device: torch.device, repeats: int) -> float:
    work()  # warm-up: kernels chosen, memory allocated
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _Shapes(Dataset):
    """Synthetic instance data: images with three filled rectangles each, their boxes and masks."""

    def __init__(self, count: int, size: int = 256, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for _ in range(count):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            masks = np.zeros((3, size, size), np.uint8)
            boxes = []
            for k in range(3):
                y, x = rng.integers(0, size - 60, 2)
                h, w = rng.integers(24, 60, 2)
                masks[k, y : y + h, x : x + w] = 1
                image[y : y + h, x : x + w] = 200 - 50 * k
                boxes.append([x, y, x + w, y + h])
            target = {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.tensor([1, 2, 3], dtype=torch.int64),
                "masks": torch.from_numpy(masks),
            }
            self.items.append((to_model_input(image), target))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.items[index]


def _pairs(batch: list) -> tuple[list, list]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def measure_device(device: torch.device, repeats: int = 3) -> dict[str, float]:
    """Seconds of each unit on ``device`` (see the module docstring)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 256, 256, generator=generator)
    tags = (torch.rand(64, 4, generator=generator) > 0.5).float()
    shapes = _Shapes(4)
    with device_option(str(device)), tempfile.TemporaryDirectory() as tmp:
        classifier = PeakClassifier(ClassifierConfig(num_classes=4, backbone="small"))

        def epoch() -> None:
            config = TrainConfig(epochs=1, batch_size=16, seed=0)
            train(classifier, TensorDataset(images, tags), classifier_loss, config, Path(tmp) / "classifier")

        epoch_s = _median_seconds(epoch, device, repeats)
        classifier.to(device).eval()
        image = torch.randn(1, 3, 448, 448, generator=generator)
        every_peak = PRMConfig(class_threshold=None, max_peaks=PRM_PEAKS)
        prms_s = _median_seconds(lambda: peak_response_maps(classifier, image, every_peak), device, repeats)
        peaks = len(peak_response_maps(classifier, image, every_peak).peaks)
        maskrcnn = build_maskrcnn(MaskRCNNConfig(num_classes=3, backbone="mobilenet_v3", image_size=256))

        def two_steps() -> None:
            config = TrainConfig(epochs=1, batch_size=2, seed=0)
            train(maskrcnn, shapes, maskrcnn_loss, config, Path(tmp) / "maskrcnn", collate_fn=_pairs)

        step_s = _median_seconds(two_steps, device, repeats) / 2
    return {"classifier_epoch_s": epoch_s, "prms_s": prms_s, "prm_peaks": peaks, "maskrcnn_step_s": step_s}


def measure_devices(repeats: int = 3) -> dict[str, Any]:
    """``measure_device`` on the CPU and every visible CUDA GPU; ratios CPU / GPU for the first GPU."""
    found: dict[str, Any] = {"cpu": measure_device(torch.device("cpu"), repeats)}
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index in range(gpus):
        found[f"cuda:{index}"] = {
            "name": torch.cuda.get_device_name(index),
            **measure_device(torch.device(f"cuda:{index}"), repeats),
        }
    report: dict[str, Any] = {"gpu": gpus > 0, "times": found}
    if gpus:
        cpu, gpu = found["cpu"], found["cuda:0"]
        report["ratios"] = {
            key: cpu[key] / gpu[key] for key in ("classifier_epoch_s", "prms_s", "maskrcnn_step_s")
        }
    return report
