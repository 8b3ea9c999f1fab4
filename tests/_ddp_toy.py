"""Run by tests/test_distributed.py under torchrun: train the engine's toy model, compare ranks."""

import sys

import torch

from tests._engine_toy import CONFIG, toy_dataset, toy_loss, toy_model
from tests._torchrun import report_identical_and_finish
from wsseg.training.engine import train

torch.set_num_threads(1)
model = toy_model()
train(model, toy_dataset(), toy_loss, CONFIG, sys.argv[1])
report_identical_and_finish(model.parameters())
