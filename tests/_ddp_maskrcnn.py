"""Run by tests/test_maskrcnn_distributed.py under torchrun: train the tiny Mask R-CNN, compare ranks."""

import sys

import torch

import wsseg.stages.train_maskrcnn as stage
from tests._maskrcnn_data import TINY
from tests._torchrun import report_identical_and_finish
from wsseg.store.importer import GROUND_TRUTH
from wsseg.store.project import Project
from wsseg.training.engine import TrainConfig

torch.set_num_threads(1)
built = []
build = stage.build_maskrcnn
stage.build_maskrcnn = lambda config: built.append(build(config)) or built[-1]  # keep the model to compare
project = Project(sys.argv[1])
config = TrainConfig(epochs=2, batch_size=2, lr=1e-3)
stage.train_maskrcnn(project, project.root / GROUND_TRUTH, TINY, config, name="ddp", max_images=8)
report_identical_and_finish(built[0].parameters())
