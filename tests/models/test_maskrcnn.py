"""Mask R-CNN: a tiny model learns, its dataset keeps masks on their objects, and the stage runs
end to end through the command line (train, resume, evaluate, predictions in the store)."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from tests._maskrcnn_data import TINY, tiny_project
from wsseg.cli import main
from wsseg.errors import BadInputError
from wsseg.models.maskrcnn import COCO_DETECTOR, MaskRCNNConfig, build_maskrcnn, predict
from wsseg.stages.common import init_backbone
from wsseg.stages.train_maskrcnn import classifier_width, load_maskrcnn, maskrcnn_loss
from wsseg.store.importer import GROUND_TRUTH
from wsseg.store.project import Project
from wsseg.training.datasets import Augment
from wsseg.training.engine import CHECKPOINT, TrainConfig, load_checkpoint, train
from wsseg.training.instance_data import InstanceImages, augment_pair, collate, mask_boxes


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return tiny_project(tmp_path_factory.mktemp("maskrcnn"))


def test_dataset_targets_match_the_ground_truth(project: Project) -> None:
    data = InstanceImages.from_coco(project, project.root / GROUND_TRUTH, split="train")
    assert len(data) == 8  # the val images of the same file are left out
    image, target = data[0]
    assert image.shape == (3, 64, 64) and image.min() >= 0.0 and image.max() <= 1.0
    masks = target["masks"].numpy().astype(bool)
    assert len(masks) >= 1 and set(target["labels"].tolist()) <= {1, 2, 3, 4}
    for mask, box in zip(masks, target["boxes"].numpy(), strict=True):
        ys, xs = np.nonzero(mask)
        assert tuple(box) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_augmentation_moves_masks_with_their_pixels(project: Project) -> None:
    data = InstanceImages.from_coco(project, project.root / GROUND_TRUTH)
    image = (data[1][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    masks = data[1][1]["masks"].numpy().astype(bool)
    aug = Augment(flips=True, hflip=True, colour=False)
    for seed in range(6):
        out_image, out_masks = augment_pair(image, masks, aug, seed)
        for before, after in zip(masks, out_masks, strict=True):
            # The same pixels (as a multiset) lie under each mask after any flip or turn.
            assert np.array_equal(np.sort(image[before], axis=0), np.sort(out_image[after], axis=0))


def test_mask_boxes_of_a_single_pixel_is_not_degenerate() -> None:
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 3, 5] = True
    assert mask_boxes(mask).tolist() == [[5.0, 3.0, 6.0, 4.0]]


def test_tiny_model_loss_falls(project: Project, tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = InstanceImages.from_coco(project, project.root / GROUND_TRUTH)
    data.items = data.items[:4]
    model = build_maskrcnn(TINY)
    config = TrainConfig(epochs=8, batch_size=4, lr=2e-3, warmup_fraction=0.1)
    result = train(model, data, maskrcnn_loss, config, tmp_path, collate_fn=collate)
    totals = [sum(epoch.values()) for epoch in result.history]
    assert set(result.history[0]) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    assert np.mean(totals[-2:]) < 0.7 * np.mean(totals[:2])


def test_predict_returns_instances_at_the_image_size() -> None:
    model = build_maskrcnn(TINY)
    images = [np.zeros((64, 64, 3), np.uint8), np.full((48, 80, 3), 200, np.uint8)]
    out = predict(model, images)
    assert [inst.masks.shape[1:] for inst in out] == [(64, 64), (48, 80)]
    for inst in out:
        assert inst.masks.dtype == bool and len(inst.labels) == len(inst.scores) == len(inst.masks)
        assert ((inst.labels >= 0) & (inst.labels < 4)).all()
    assert model.training  # predict restores the mode it found


def test_config_rejects_bad_values_and_round_trips() -> None:
    with pytest.raises(BadInputError, match="backbone"):
        MaskRCNNConfig(num_classes=2, backbone="vgg")
    with pytest.raises(BadInputError, match="num_classes"):
        MaskRCNNConfig(num_classes=0)
    assert MaskRCNNConfig.from_dict(json.loads(json.dumps(TINY.as_dict()))) == TINY


def test_resnet50_option_builds_and_runs() -> None:
    model = build_maskrcnn(MaskRCNNConfig(num_classes=2, backbone="resnet50", fpn_channels=32, image_size=64))
    assert len(predict(model, [np.zeros((64, 64, 3), np.uint8)])) == 1


def test_weights_file_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(BadInputError, match="w.pt"):
        build_maskrcnn(MaskRCNNConfig(num_classes=2, weights=str(tmp_path / "w.pt")))


def _cli(project: Project, *extra: str) -> list[str]:
    return ["train-maskrcnn", "--project", str(project.root), "--image-size", "64", "--epochs", "1"] + [
        "--batch-size",
        "4",
        *extra,
    ]


def test_train_resume_evaluate_through_the_command_line(project: Project, tmp_path: Path) -> None:
    assert main(_cli(project, "--source", "truth", "--name", "cli")) == 0
    run = project.latest_run("maskrcnn")
    assert run is not None and run.metrics["epochs_done"] == 1 and run.config["images"] == 8
    before = load_maskrcnn(project, "cli")[0].state_dict()
    assert main([*_cli(project, "--source", "truth", "--name", "cli"), "--resume"]) == 0
    after = load_maskrcnn(project, "cli")[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--project", str(project.root), "--name", "cli", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["images"] == 4
    assert {"map25", "map50", "map75", "pointing_accuracy", "count_mae", "per_class_map50"} <= set(metrics)
    run = project.latest_run("evaluate")
    assert run.metrics["map50"] == metrics["map50"]
    # The stored predictions and the COCO result file hold the same instances, and pycocotools reads it.
    stored = project.predictions(run.id)
    results = json.loads((project.artifacts("evaluate", run.id) / "predictions.json").read_text())
    assert len(stored) == len(results)
    if results:
        gt = COCO(str(project.root / GROUND_TRUTH))
        assert len(gt.loadRes(results).getAnnIds()) == len(results)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--coco", "x.json", "--source", "truth"], "either --coco or --source"),
        (["--coco", "missing.json"], "missing.json"),
        (["--source", "pseudo"], "no pseudo masks"),
        (["--resume", "--source", "truth", "--name", "never"], "nothing to resume"),
    ],
)
def test_train_errors_are_one_line(
    project: Project, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(project, *args)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_evaluate_errors_are_one_line(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--project", str(project.root), "--name", "nothing"]) == 2
    assert main(["evaluate", "--project", str(project.root), "--stage", "crf"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "checkpoint not found" in err[0] and "--stage" in err[1]


def test_weights_file_of_the_classification_model_is_loaded(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(3)
    net = torchvision.models.mobilenet_v3_large()
    torch.save(net.state_dict(), tmp_path / "mnv3.pt")
    model = build_maskrcnn(MaskRCNNConfig(num_classes=2, weights=str(tmp_path / "mnv3.pt")))
    assert torch.equal(model.backbone.body["0"][0].weight, net.features[0][0].weight)


def test_batchnorm_is_frozen_when_a_detection_backbone_starts_pretrained(tmp_path: Path) -> None:
    import torchvision
    from torchvision.ops.misc import FrozenBatchNorm2d

    reference = torchvision.models.mobilenet_v2()
    path = tmp_path / "mnv2.pt"
    torch.save({k: v for k, v in reference.state_dict().items() if k.startswith("features.")}, path)

    def norms(config: MaskRCNNConfig) -> set[type]:
        return {type(m) for m in build_maskrcnn(config).backbone.body.modules()} & {
            torch.nn.BatchNorm2d,
            FrozenBatchNorm2d,
        }

    config = MaskRCNNConfig(num_classes=2, backbone="mobilenet_v2", weights=str(path))
    assert norms(config) == {FrozenBatchNorm2d}
    frozen = build_maskrcnn(config).backbone.body
    assert torch.equal(frozen["0"][1].running_var, reference.features[0][1].running_var)  # the file's
    assert norms(MaskRCNNConfig(num_classes=2, backbone="mobilenet_v2")) == {torch.nn.BatchNorm2d}
    assert norms(
        MaskRCNNConfig(num_classes=2, backbone="mobilenet_v2", weights=str(path), frozen_bn=False)
    ) == {torch.nn.BatchNorm2d}


def test_stored_pseudo_masks_are_exported_without_rejected_ones(tmp_path: Path) -> None:
    from wsseg.data.coco import encode_mask, read_coco
    from wsseg.stages.train_maskrcnn import export_pseudo_masks
    from wsseg.store.importer import ground_truth

    project = tiny_project(tmp_path, n_train=2, n_val=1)
    gt = ground_truth(project)
    records = project.images(split="train")[:2]
    ids = []
    for record in records:
        inst = gt.instances[record.id][0]
        ids.append(project.add_pseudo_mask(record.id, inst.category, encode_mask(inst.mask)))
    project.edit_mask(ids[1], 1, "reject", status="rejected")
    coco = read_coco(export_pseudo_masks(project, tmp_path / "pseudo.json"))
    assert [img.file_name for img in coco.images] == [records[0].filename]
    (inst,) = coco.instances[records[0].id]
    assert np.array_equal(inst.mask, gt.instances[records[0].id][0].mask)
    data = InstanceImages.from_coco(project, tmp_path / "pseudo.json")
    assert len(data) == 1 and len(data[0][1]["labels"]) == 1


def test_init_starts_the_small_body_from_a_classifier(trained: Path) -> None:
    project = Project(trained)
    checkpoint = trained / "checkpoints" / "classifier" / CHECKPOINT
    width = classifier_width(project, "classifier")
    config = MaskRCNNConfig(
        num_classes=4, backbone="small", small_width=width, image_size=64, fpn_channels=16
    )
    model = build_maskrcnn(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    body = {k: v for k, v in load_checkpoint(checkpoint)["model"].items() if k.startswith("backbone.body.")}
    assert init_backbone(model, checkpoint, "backbone.body.", complete=False) == len(body) > 0
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in body.items())
    rest = [k for k in state if k not in body]  # deeper layers, FPN and heads keep their initialisation
    assert rest and all(torch.equal(state[k], before[k]) for k in rest)
    wider = build_maskrcnn(dataclasses.replace(config, small_width=2 * width))
    with pytest.raises(BadInputError, match="does not fit"):
        init_backbone(wider, checkpoint, "backbone.body.", complete=False)


def test_init_through_the_command_line(trained: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "p"
    shutil.copytree(trained, root)
    args = ["--source", "truth", "--init", "classifier", "--name", "from-tags"]
    assert main(_cli(Project(root), *args)) == 0
    run = Project(root).latest_run("maskrcnn")
    assert run.config["init"] == "classifier" and run.config["model"]["backbone"] == "small"
    assert run.config["model"]["small_width"] == classifier_width(Project(root), "classifier")
    capsys.readouterr()
    assert main(_cli(Project(root), *args, "--backbone", "mobilenet_v3", "--name", "mnv3")) == 2
    assert "small backbone only" in capsys.readouterr().err
    assert main(_cli(Project(root), "--source", "truth", "--init", "from-tags")) == 2
    assert "is not a classifier checkpoint" in capsys.readouterr().err


def test_coco_detector_weights_by_name_are_refused_offline_with_the_cache_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache
    config = MaskRCNNConfig(num_classes=2, backbone=COCO_DETECTOR, weights="COCO_V1")
    with pytest.raises(BadInputError, match="not in torch's cache") as info:
        build_maskrcnn(config)
    assert str(tmp_path / "hub" / "checkpoints") in str(info.value)
    assert "never downloads" in str(info.value)


def test_coco_detector_loads_its_file_and_gets_new_predictors(tmp_path: Path) -> None:
    """A state dict of torchvision's whole ``maskrcnn_resnet50_fpn_v2`` (random here, COCO's in use)
    starts everything but the two class-specific predictors; its backbone's BatchNorm stays frozen."""
    import torchvision
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(5)
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)
    state = reference.state_dict()
    state["backbone.body.bn1.running_mean"].uniform_(-1, 1)  # statistics no initialisation gives
    path = tmp_path / "maskrcnn_v2.pth"
    torch.save(state, path)
    del reference
    model = build_maskrcnn(MaskRCNNConfig(num_classes=3, backbone=COCO_DETECTOR, weights=str(path)))
    own = model.state_dict()
    assert torch.equal(own["backbone.body.bn1.running_mean"], state["backbone.body.bn1.running_mean"])
    assert torch.equal(own["rpn.head.cls_logits.weight"], state["rpn.head.cls_logits.weight"])
    assert torch.equal(own["roi_heads.mask_head.0.0.weight"], state["roi_heads.mask_head.0.0.weight"])
    assert own["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4  # 3 classes + background
    assert own["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 4
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 80)])[0]
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    assert out["masks"].shape[1:] == (1, 64, 80)
    wrong = tmp_path / "other.pth"
    torch.save({"features.0.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(BadInputError, match="is not a state dict of torchvision's"):
        build_maskrcnn(MaskRCNNConfig(num_classes=3, backbone=COCO_DETECTOR, weights=str(wrong)))
