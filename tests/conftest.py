"""Shared test set-up: one torch thread (the tests use tiny tensors, and the machine has 2 cores), and
the small projects several test files share (built once per session, only when a test asks)."""

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 demo images, nothing trained."""
    from wsseg.demo.project import create_demo_project

    root = tmp_path_factory.mktemp("demo") / "project"
    create_demo_project(root, n_images=30, seed=2)
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 demo images, a tiny classifier (1 epoch), a peaks run over every other image (so the others'
    maps are computed on demand) and one pseudo mask: a disc of radius 15 around the first image's
    strongest peak, linked to that peak."""
    from wsseg.data.coco import encode_mask
    from wsseg.demo.project import create_demo_project
    from wsseg.methods.prm import PRMConfig
    from wsseg.models.classifier import ClassifierConfig
    from wsseg.stages.make_peaks import make_peaks
    from wsseg.stages.train_classifier import train_classifier
    from wsseg.training.engine import TrainConfig

    root = tmp_path_factory.mktemp("trained") / "project"
    project = create_demo_project(root, n_images=12, seed=4)
    config = ClassifierConfig(num_classes=4, backbone="small", small_width=8, peak_stimulation=False)
    train_classifier(project, config, TrainConfig(epochs=1, batch_size=12, seed=0), augment=None)
    make_peaks(project, prm_config=PRMConfig(class_threshold=None, max_peaks=6), shard=(0, 2))
    first = project.images(limit=1)[0]
    peak = project.peaks(first.id)[0]
    yy, xx = np.mgrid[0 : first.height, 0 : first.width]
    disc = (yy - peak.y) ** 2 + (xx - peak.x) ** 2 <= 15**2
    project.add_pseudo_mask(
        first.id,
        peak.class_name,
        encode_mask(disc),
        peak_id=peak.id,
        strategy="prm",
        score=0.75,
        lineage={"proposal_rank": 1},
    )
    return root


@pytest.fixture(scope="session")
def proposed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 demo images through the product's commands: a classifier (1 epoch, batch 4), a peaks run
    (every class, so each image has peaks) and a proposals run (one worker). About 10 s."""
    from wsseg.cli import main
    from wsseg.demo.project import create_demo_project

    root = tmp_path_factory.mktemp("proposed") / "project"
    create_demo_project(root, n_images=6)
    main(["train-classifier", "--project", str(root), "--epochs", "1", "--batch-size", "4"])
    main(["peaks", "--project", str(root), "--class-threshold", "-1000"])
    main(["proposals", "--project", str(root), "--workers", "1"])
    return root


@pytest.fixture(scope="session")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Learn page's lesson project on 3 demo images: the shipped classifier, its peaks and a
    proposals run (``create_lesson_project``). About 5 s."""
    from wsseg.views.lesson_data import create_lesson_project

    root = tmp_path_factory.mktemp("lesson") / "project"
    create_lesson_project(root, images=3)
    return root


@pytest.fixture(scope="session")
def masked(proposed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``proposed`` with a pseudo-masks run of the product's command (one worker)."""
    import shutil

    from wsseg.cli import main

    root = tmp_path_factory.mktemp("masked") / "project"
    shutil.copytree(proposed, root)
    assert main(["pseudo-masks", "--project", str(root), "--workers", "1"]) == 0
    return root
