"""Run by tests/test_maskrcnn_distributed.py under torchrun: train the tiny Mask R-CNN, compare ranks."""

import sys

import torch
import torch.distributed as dist

import wsseg.stages.train_maskrcnn as stage
from tests._maskrcnn_data import TINY
from wsseg.engine import TrainConfig
from wsseg.importer import GROUND_TRUTH
from wsseg.store import Project

torch.set_num_threads(1)
built = []
build = stage.build_maskrcnn
stage.build_maskrcnn = lambda config: built.append(build(config)) or built[-1]  # keep the model to compare
project = Project(sys.argv[1])
config = TrainConfig(epochs=2, batch_size=2, lr=1e-3)
stage.train_maskrcnn(project, project.root / GROUND_TRUTH, TINY, config, name="ddp", max_images=8)
flat = torch.cat([p.detach().flatten() for p in built[0].parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    same = all(torch.equal(gathered[0], g) for g in gathered)
    print(f"world={dist.get_world_size()} identical={same}", flush=True)
dist.destroy_process_group()
