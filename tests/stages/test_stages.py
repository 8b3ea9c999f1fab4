"""The classifier and peaks stages through the command line, on a tiny demo project."""

from pathlib import Path

import numpy as np
import pytest

from wsseg.cli import main
from wsseg.demo.project import create_demo_project
from wsseg.errors import BadInputError
from wsseg.stages.make_peaks import load_result, parse_shard
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.importer import ground_truth
from wsseg.store.project import Project


def _train_args(root: Path) -> list[str]:
    return ["train-classifier", "--project", str(root), "--epochs", "2", "--batch-size", "8"] + [
        "--pooling",
        "average",
        "--augment",
        "flips,colour",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stages") / "p"
    create_demo_project(root, n_images=16, seed=4)
    args = _train_args(root)
    assert main(args) == 0
    return root


def test_train_classifier_records_run_and_checkpoint(trained: Path) -> None:
    project = Project(trained)
    run = project.latest_run("classifier")
    assert run is not None and run.metrics["epochs_done"] == 2
    assert run.config["model"]["peak_stimulation"] is False
    model, classes, _ = load_classifier(project)
    assert classes == project.classes() and not model.training


def test_resume_of_a_finished_run_trains_nothing_more(trained: Path) -> None:
    before = load_classifier(Project(trained))[0].state_dict()
    args = _train_args(trained)
    assert main([*args, "--resume"]) == 0
    after = load_classifier(Project(trained))[0].state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


def test_peaks_in_two_shards_cover_every_image_once(trained: Path) -> None:
    project = Project(trained)
    assert main(["peaks", "--project", str(trained), "--shard", "0/2", "--relative-threshold", "0.1"]) == 0
    run_id = project.latest_run("peaks").id
    assert main(["peaks", "--project", str(trained), "--shard", "1/2", "--run", str(run_id)]) == 0
    folder = project.artifacts("peaks", run_id)
    files = sorted(folder.glob("*.npz"))
    assert len(files) == project.count_images()
    n_classes = len(project.classes())
    for record in project.images():
        data = load_result(folder / f"{record.id}.npz")
        assert data["crm"].shape[0] == n_classes
        assert data["prms"].shape == (len(data["peaks"]), record.height, record.width)
        if len(data["prms"]):
            np.testing.assert_allclose(data["prms"].sum(axis=(1, 2)), 1.0, rtol=2e-2)
            assert (data["prms"] >= 0).all()
        stored = project.peaks(record.id, run_id)
        assert len(stored) == len(data["peaks"])
        assert all(p.prm_path == str((folder / f"{record.id}.npz").relative_to(trained)) for p in stored)


def test_augment_option() -> None:
    from wsseg.stages.train_classifier import parse_augment
    from wsseg.training.datasets import Augment

    assert parse_augment("flips,colour") == Augment(flips=True, hflip=False, colour=True)
    assert parse_augment("none") is None
    with pytest.raises(BadInputError, match="--augment"):
        parse_augment("sparkle")


def test_dilations_option() -> None:
    from wsseg.stages.train_classifier import parse_dilations

    assert parse_dilations("1") == (1,)
    assert parse_dilations("2,3") == (2, 3)
    assert parse_dilations("none") == ()
    for bad in ("0", "2,x", "-1"):
        with pytest.raises(BadInputError, match="--dilations"):
            parse_dilations(bad)


def test_bad_shard_and_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="i/n"):
        parse_shard("2")
    with pytest.raises(BadInputError, match="0 <= i < n"):
        parse_shard("3/3")
    create_demo_project(tmp_path / "p", n_images=2)
    assert main(["peaks", "--project", str(tmp_path / "p")]) == 2


def test_peaks_on_enlarged_images(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--scale 2``: the classifier sees each image enlarged twice, so its maps and PRMs are twice as
    large and every peak is the one ``find_peaks`` gives on the enlarged image, computed here."""
    import cv2
    import torch

    from wsseg.data.images import read_image
    from wsseg.models.normalise import to_tensor
    from wsseg.models.peaks import find_peaks
    from wsseg.stages.evaluate_classifier import evaluate_classifier
    from wsseg.stages.recipes import INFERENCE_PEAKS, InferencePeaks

    project = Project(trained)
    assert main(["peaks", "--project", str(trained), "--scale", "2", "--shard", "0/4"]) == 0
    run = project.latest_run("peaks")
    assert run.config["scale"] == 2.0
    model, classes, _ = load_classifier(project)
    records = project.images()[::4]
    assert len(records) == 4
    for record in records:
        data = load_result(project.artifact("peaks", run.id, record.id, ".npz"))
        assert data["prms"].shape[1:] == (2 * record.height, 2 * record.width)
        image = read_image(project.image_path(record), record.filename)
        big = cv2.resize(image, (2 * record.width, 2 * record.height), interpolation=cv2.INTER_LINEAR)
        with torch.inference_mode():
            crm = model(to_tensor(big)[None])["crm"][0]
        assert data["crm"].shape == tuple(crm.shape)
        expected = find_peaks(  # the command line's defaults are the recipe's inference peaks
            crm,
            model.config.peaks,
            class_threshold=INFERENCE_PEAKS.class_threshold,
            class_scores=crm.mean(dim=(1, 2)),  # the trained model pools by averaging
            peak_threshold=INFERENCE_PEAKS.peak_threshold,
            relative_threshold=INFERENCE_PEAKS.relative_threshold,
            smooth=INFERENCE_PEAKS.smooth,
            stride=model.stride,
            image_size=big.shape[:2],
        )
        assert [(p.class_index, p.y, p.x) for p in expected] == [
            (int(c), int(y), int(x)) for c, y, x, _ in data["peaks"]
        ]

    # the evaluation at scale 2 counts the peaks of the enlarged images
    metrics = evaluate_classifier(
        project, model, classes, None, inference=InferencePeaks(scale=2.0), prm_images=0
    )
    truth = ground_truth(project)
    index = {name: k for k, name in enumerate(classes)}
    count = inside = 0
    for record in project.images():
        image = read_image(project.image_path(record), record.filename)
        big = cv2.resize(image, (2 * record.width, 2 * record.height), interpolation=cv2.INTER_LINEAR)
        with torch.inference_mode():
            crm = model(to_tensor(big)[None])["crm"][0]
        found = find_peaks(
            crm,
            model.config.peaks,
            peak_threshold=0.0,
            relative_threshold=0.3,
            smooth=1.0,
            stride=model.stride,
            image_size=big.shape[:2],
        )
        tagged = {index[t] for t in record.tags}
        for peak in (p for p in found if p.class_index in tagged):
            count += 1
            # a peak at (y, x) of the enlarged image lies on pixel (y // 2, x // 2) of the stored one
            inside += any(
                index[i.category] == peak.class_index
                and i.mask[int(round(peak.y)) // 2, int(round(peak.x)) // 2]
                for i in truth.instances.get(record.id, [])
            )
    assert count > 0
    assert metrics["peaks_per_image"] == pytest.approx(count / project.count_images())
    assert metrics["peak_precision"] == pytest.approx(inside / count)
    # its baselines: a uniformly placed peak's precision, and the instances under one map cell (both at
    # the enlarged size: a 2x nearest enlargement keeps each mask's share and quadruples its area)
    shares, small, total = [], 0, 0
    for record in project.images():
        instances = truth.instances.get(record.id, [])
        total += len(instances)
        small += sum(4 * int(i.mask.sum()) < model.stride**2 for i in instances)
        for tag in sorted(set(record.tags)):
            of_tag = [i.mask for i in instances if i.category == tag]
            if of_tag:
                shares.append(np.logical_or.reduce(of_tag).sum() / (record.height * record.width))
    assert metrics["chance_peak_precision"] == pytest.approx(np.mean(shares))
    assert metrics["instances_below_one_cell"] == pytest.approx(small / total)

    assert main(["peaks", "--project", str(trained), "--scale", "0"]) == 2
    assert "--scale: expected a factor in (0, 8]" in capsys.readouterr().err
