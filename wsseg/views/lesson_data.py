"""The lesson's data: a small demo project with the shipped classifier's peaks and the proposals of its
images, each image's ground truth, and the shipped demo Mask R-CNN and pixel-label estimator.

The lesson images are the first ``LESSON_IMAGES`` of the demo (shapes seed 0); none of them is among
the images the shipped models trained on (seed 1). Pure numpy/torch: no streamlit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsseg.demo.models import DEMO_MASKRCNN, DEMO_METRICS, DEMO_PLE
from wsseg.demo.project import create_demo_project, install_demo_checkpoint
from wsseg.stages.evaluate_ple import load_ple
from wsseg.stages.make_proposals import STAGE as PROPOSALS
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.train_maskrcnn import load_maskrcnn
from wsseg.store.instances import truth_instances
from wsseg.store.project import ImageRecord, Project
from wsseg.structures import Instances
from wsseg.views.cam import checkpoint_path
from wsseg.views.retrieval import newest_runs

LESSON_IMAGES = 12
DEFAULT_IMAGE = 2
"""1-based number of the image the lesson opens on: two discs and two squares."""


def create_lesson_project(
    root: str | Path, images: int = LESSON_IMAGES, progress: Callable[[int, int], None] | None = None
) -> Project:
    """Create (or reopen) the lesson project: the demo images, the shipped classifier and its peaks
    (``install_demo_checkpoint``) and a proposals run; each part is made only when missing, so only the
    first call waits (mostly for the proposals)."""
    project = create_demo_project(root, n_images=images, seed=0)
    install_demo_checkpoint(project)
    if project.latest_run(PROPOSALS) is None:
        make_proposals(project, progress=progress)
    return project


def is_ready(project: Project) -> bool:
    """Whether the lesson project has its classifier, peaks and proposals."""
    return checkpoint_path(project).is_file() and None not in newest_runs(project)


def image_truth(project: Project, record: ImageRecord) -> Instances:
    """The ground-truth instances of one lesson image (masks HxW bool at the stored size)."""
    truth, _ = truth_instances(project, split=None)
    return truth[record.id]


def open_demo_maskrcnn(path: Path = DEMO_MASKRCNN) -> tuple[Any, list[str]] | None:
    """(Mask R-CNN in eval mode, class names) of the shipped demo checkpoint, None when it is absent."""
    if not Path(path).is_file():
        return None
    model, classes, _ = load_maskrcnn(Path(path))
    return model, classes


def open_demo_ple(path: Path = DEMO_PLE) -> tuple[Any, list[str]] | None:
    """(segmenter in eval mode, its labels, background first) of the shipped demo checkpoint, None when
    it is absent."""
    if not Path(path).is_file():
        return None
    model, extra = load_ple(Path(path))
    return model, list(extra["labels"])


def demo_scores(path: Path = DEMO_METRICS) -> dict[str, Any]:
    """The demo models' held-out scores as ``wsseg demo-checkpoint --models`` measured them ({} when
    the file is absent)."""
    import json

    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}
