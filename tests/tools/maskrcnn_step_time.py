"""Seconds per Mask R-CNN training step (the bench's model, batch 8, 160x160 shapes), for time budgets.

    python -m tests.tools.maskrcnn_step_time --threads 2 --steps 12

Prints the torch thread count, the load average, every step's seconds and the median after the first
two (warm-up). docs/benchmark.md ("Curation pays off, measured") budgets ``wsseg bench --curation``
with it.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from wsseg.data.shapes import ShapesConfig, generate
from wsseg.models.maskrcnn import MaskRCNNConfig, build_maskrcnn, to_model_input
from wsseg.training.instance_data import mask_boxes


def step_times(threads: int, steps: int, batch: int = 8) -> list[float]:
    """Seconds of each of ``steps`` AdamW steps of the default MaskRCNNConfig on batches of ``batch``
    shapes images (three batches, cycled)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_maskrcnn(MaskRCNNConfig(num_classes=4)).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = []
    for b in range(3):
        samples = [generate(ShapesConfig(), b * batch + k) for k in range(batch)]
        images = [to_model_input(s.image) for s in samples]
        targets = [
            {
                "boxes": mask_boxes(s.masks),
                "labels": torch.tensor([int(c) + 1 for c in s.labels], dtype=torch.int64),
                "masks": torch.from_numpy(s.masks.astype(np.uint8)),
            }
            for s in samples
        ]
        batches.append((images, targets))
    times = []
    for i in range(steps):
        images, targets = batches[i % len(batches)]
        start = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    load = os.getloadavg()
    times = step_times(args.threads, args.steps)
    print(
        f"threads {args.threads} · load average {load[0]:.1f} -> {os.getloadavg()[0]:.1f} · "
        f"steps {[round(t, 2) for t in times]} · median after warm-up {np.median(times[2:]):.2f} s"
    )


if __name__ == "__main__":
    main()
