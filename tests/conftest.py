"""Shared test set-up: one torch thread (the tests use tiny tensors, and the machine has 2 cores)."""

import torch

torch.set_num_threads(1)
