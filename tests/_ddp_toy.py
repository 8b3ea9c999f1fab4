"""Run by tests/test_distributed.py under torchrun: train the engine's toy model, compare ranks."""

import sys

import torch
import torch.distributed as dist

from tests._engine_toy import CONFIG, toy_dataset, toy_loss, toy_model
from wsseg.engine import train

torch.set_num_threads(1)
model = toy_model()
train(model, toy_dataset(), toy_loss, CONFIG, sys.argv[1])
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    same = all(torch.equal(gathered[0], g) for g in gathered)
    print(f"world={dist.get_world_size()} identical={same}", flush=True)
dist.destroy_process_group()
