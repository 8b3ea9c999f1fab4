"""``wsseg.training.datasets``: a project's training images and their tags, with an image that cannot be
read left out (named in a warning) instead of ending the training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsseg.errors import BadInputError
from wsseg.store.project import Project
from wsseg.training.datasets import TaggedImages


def _add(project: Project, name: str, value: int, tags: tuple[str, ...]) -> None:
    data = cv2.imencode(".png", np.full((40, 40, 3), value, np.uint8))[1].tobytes()
    project.add_image(name, data, 40, 40, hashlib.sha256(data).hexdigest(), tags)


def test_an_unreadable_training_image_is_left_out_with_a_warning_naming_it(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    project.add_classes(["cat", "dog"])
    _add(project, "a.png", 10, ("cat",))
    _add(project, "broken.png", 20, ("cat", "dog"))
    _add(project, "c.png", 30, ("dog",))
    broken = next(r for r in project.images() if r.filename == "broken.png")
    path = project.image_path(broken)
    path.write_bytes(path.read_bytes()[:40])  # truncated on disk after the import
    with pytest.warns(UserWarning, match=r"broken\.png left out of training: .*corrupt or truncated"):
        data = TaggedImages.from_project(project, size=32)
    assert len(data) == 2
    # the tags still belong to their images: a.png (value 10) is a cat, c.png (value 30) a dog
    assert data.images[:, 0, 0, 0].tolist() == [10, 30]
    assert data.targets.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_no_readable_training_image_is_a_clear_error(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    project.add_classes(["cat"])
    _add(project, "a.png", 10, ("cat",))
    project.image_path(project.images()[0]).unlink()
    with pytest.warns(UserWarning, match="a.png"), pytest.raises(BadInputError, match="none of its 1"):
        TaggedImages.from_project(project)
