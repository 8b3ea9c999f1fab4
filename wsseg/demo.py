"""The demo project: the synthetic ``shapes`` dataset imported into a project folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from wsseg.data.shapes import ShapesConfig, write_shapes_dataset
from wsseg.errors import BadInputError
from wsseg.importer import import_source
from wsseg.store import Project


def create_demo_project(root: str | Path, n_images: int = 200, seed: int = 0) -> Project:
    """Create (or reopen) the demo project at ``root``; images are generated only when it has none."""
    root = Path(root)
    project = Project.create(root, name="demo (shapes)")
    if project.count_images() > 0:
        return project
    if n_images < 1:
        raise BadInputError("images", f"must be at least 1, got {n_images}")
    staging = root / ".demo-staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_shapes_dataset(staging, n_images, ShapesConfig(seed=seed))
        import_source(project, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return project
