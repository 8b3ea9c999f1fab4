"""The CAM score card against maps whose answers are known: the true masks themselves, their inverse,
and a trained classifier's own maps scored by hand."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from wsseg.errors import BadInputError
from wsseg.methods.cams import LABELS
from wsseg.models.cam_models import CamModel, peak_classifier_cams
from wsseg.stages.make_peaks import prepare_image
from wsseg.stages.score_cams import FIGURES, best_pointing, score_cams
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.instances import true_instances
from wsseg.store.project import Project


def _truth_maps(project: Project, invert: bool) -> CamModel:
    """A model whose class response maps are the union of each class's true masks (or its inverse),
    looked up by the image it is given."""
    classes = project.classes()
    records = project.images()
    truth = true_instances(project, records)
    table = {}
    for record in records:
        image, tensor = prepare_image(project, record, None)
        maps = np.zeros((len(classes), *image.shape[:2]), np.float32)
        for mask, c in zip(truth[record.id].masks, truth[record.id].labels, strict=True):
            maps[c][mask] = 1.0
        table[tensor.numpy().tobytes()] = torch.from_numpy(1.0 - maps if invert else maps)

    def crm(images: torch.Tensor) -> torch.Tensor:
        return table[images.numpy().tobytes()][None]

    return CamModel(nn.Identity(), classes, {"x": nn.Identity()}, "x", 8, crm, "truth")


def test_maps_equal_to_the_truth_score_perfectly_and_their_inverse_does_not(trained) -> None:
    project = Project(trained)
    right = score_cams(project, _truth_maps(project, False), ["crm"], split=None, images=6)["methods"]["crm"]
    wrong = score_cams(project, _truth_maps(project, True), ["crm"], split=None, images=6)["methods"]["crm"]
    assert right["pointing"] == 1.0 and wrong["pointing"] == 0.0
    assert right["miou"] > 0.95 and wrong["miou"] < 0.5
    assert right["peak_precision"] > 0.9 > 0.2 > wrong["peak_precision"]
    assert right["instance_recall"] > wrong["instance_recall"]
    assert right["pseudo_map50"] > wrong["pseudo_map50"]


def test_a_trained_classifier_scored_as_by_hand(trained) -> None:
    project = Project(trained)
    net, classes, _ = load_classifier(project)
    model = peak_classifier_cams(net, classes, "classifier")
    card = score_cams(project, model, ["crm", "gradcam"], split=None, images=4)
    assert card["images"] == 4 and set(card["methods"]) == {"crm", "gradcam"}
    for method, row in card["methods"].items():
        assert row["label"] == LABELS[method]
        assert set(FIGURES) <= set(row)
        assert all(
            0.0 <= row[k] <= 1.0
            for k in ("pointing", "peak_precision", "instance_recall", "miou", "pseudo_map50")
        )
    # the pointing game of the class response maps, counted here from the network's own maps
    records = [r for r in project.images() if r.tags][:4]
    truth = true_instances(project, records)
    index = {c: i for i, c in enumerate(classes)}
    hits = pairs = 0
    for record in records:
        image, tensor = prepare_image(project, record, None)
        with torch.no_grad():
            crm = net.class_response_maps(tensor)[0]
        up = torch.nn.functional.interpolate(crm[None].clamp(min=0), size=image.shape[:2], mode="bilinear")[0]
        for tag in record.tags:
            c = index[tag]
            own = truth[record.id].masks[truth[record.id].labels == c]
            if len(own):
                pairs += 1
                y, x = np.unravel_index(int(up[c].argmax()), image.shape[:2])
                hits += int(own[:, y, x].any())
    assert card["methods"]["crm"]["pointing"] == pytest.approx(hits / pairs)
    assert best_pointing(card) in card["methods"]


def test_a_classifier_of_other_classes_or_no_truth_is_refused(trained, tmp_path) -> None:
    project = Project(trained)
    other = CamModel(nn.Identity(), ["tench"] * 1000, {"x": nn.Identity()}, "x", 32, None, "imagenet")
    with pytest.raises(BadInputError, match="not the project's"):
        score_cams(project, other, ["gradcam"])
    model = _truth_maps(project, False)
    with pytest.raises(
        BadInputError, match="no tagged image with true masks in split 'nope'.*splits with them: train"
    ):
        score_cams(project, model, ["crm"], split="nope")


def test_the_command_writes_the_card_and_names_bad_methods(trained, tmp_path, capsys) -> None:
    from wsseg.cli import main

    out = tmp_path / "card.json"
    argv = ["cams", "--project", str(trained), "--split", "all", "--images", "2", "--methods", "crm,eigencam"]
    assert main([*argv, "--out", str(out)]) == 0
    card = json.loads(out.read_text())
    assert list(card["methods"]) == ["crm", "eigencam"] and card["images"] == 2
    assert "| Eigen-CAM |" in capsys.readouterr().out
    assert main(["cams", "--project", str(trained), "--methods", "gradcam,nope"]) == 2
    assert "--methods" in capsys.readouterr().err
