"""Pretrained weights files a user puts in a project: the one place their folder and suffixes are named."""

from __future__ import annotations

from pathlib import Path

from wsseg.store.project import Project

WEIGHTS_DIR = "weights"
"""The project's folder of weights files (torchvision's format), offered by the Train and CAM pages."""
WEIGHT_SUFFIXES = (".pt", ".pth")


def weight_files(project: Project) -> list[Path]:
    """The project's weights files, sorted by name (none when it has no ``weights/`` folder)."""
    folder = project.root / WEIGHTS_DIR
    return sorted(p for p in folder.glob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
