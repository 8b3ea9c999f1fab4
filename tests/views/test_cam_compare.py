"""The CAMs page's comparison: the classifiers offered, an uploaded photo, one method's map and its peaks."""

import shutil

import numpy as np
import pytest
import torch
import torchvision

from wsseg.errors import BadInputError
from wsseg.methods.cams import class_map
from wsseg.models.normalise import to_tensor
from wsseg.stages.make_peaks import WORKING_SIDE, prepare_image
from wsseg.store.project import Project
from wsseg.views.cam import PeakSettings
from wsseg.views.cam_compare import (
    classifier_options,
    layer_channels,
    method_map,
    open_model,
    read_upload,
    top_classes,
    with_peaks,
)


@pytest.fixture(scope="module")
def project(trained, tmp_path_factory) -> Project:
    """The trained project with a whole MobileNetV2 classifier's weights file in its weights/ folder."""
    root = tmp_path_factory.mktemp("compare") / "project"
    shutil.copytree(trained, root)
    (root / "weights").mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), root / "weights" / "mnv2.pth")
    (root / "weights" / "notes.txt").write_text("not weights")
    return Project(root)


def test_the_project_classifier_and_each_imagenet_network_with_the_file_are_offered(project) -> None:
    options = classifier_options(project)
    assert options[0] == "project classifier: classifier"
    assert "ImageNet mobilenet_v2 · mnv2.pth" in options and not any("notes.txt" in o for o in options)
    ours = open_model(project, options[0])
    assert ours.is_project and ours.model.classes == project.classes()
    imagenet = open_model(project, "ImageNet mobilenet_v2 · mnv2.pth")
    assert not imagenet.is_project and len(imagenet.model.classes) == 1000
    assert layer_channels(imagenet, imagenet.model.default_layer) == 1280
    assert layer_channels(ours, ours.model.default_layer) == ours.model.network.model.backbone.out_channels
    with pytest.raises(BadInputError, match="mnv2.pth.*does not fit"):  # the file, with another network
        open_model(project, "ImageNet resnet18 · mnv2.pth")
    with pytest.raises(BadInputError, match="not one of the classifiers"):
        open_model(project, "something else")


def test_an_upload_is_read_as_the_classifier_sees_it_and_a_bad_one_is_named() -> None:
    import cv2

    photo = np.zeros((900, 1200, 3), np.uint8)
    data = cv2.imencode(".png", photo)[1].tobytes()
    assert read_upload(data, "big.png", None).shape[:2] == (WORKING_SIDE * 3 // 4, WORKING_SIDE)
    assert read_upload(data, "big.png", 96).shape == (96, 96, 3)
    with pytest.raises(BadInputError, match="notes.txt"):
        read_upload(b"hello", "notes.txt", None)


def test_a_methods_map_and_its_peaks_are_those_of_the_core(project) -> None:
    opened = open_model(project, "project classifier: classifier")
    record = project.images(limit=1)[0]
    image, tensor = prepare_image(project, record, opened.size)
    c = top_classes(opened, image, 1)[0][0]
    found = method_map(opened, image, c, "gradcam", None)
    np.testing.assert_allclose(
        found.heat, class_map(opened.model, to_tensor(image)[None], c, "gradcam"), atol=1e-6
    )
    assert found.seconds > 0 and found.peaks == [] and not found.error
    shown = with_peaks(found, opened, c, PeakSettings())
    assert shown.peaks and all(p.class_index == c for p in shown.peaks)
    top = max(shown.peaks, key=lambda p: p.value)  # the strongest peak lies where the map is high
    cell = opened.model.stride
    near = found.heat[max(top.y - cell, 0) : top.y + cell + 1, max(top.x - cell, 0) : top.x + cell + 1]
    assert near.max() >= 0.3 * found.heat.max()
    failed = method_map(opened, image, c, "crm", "no-such-layer")  # crm ignores the layer: still a map
    assert failed.heat is not None
    broken = method_map(opened, image, c, "gradcam", "no-such-layer")
    assert broken.heat is None and "not a layer" in broken.error
    assert len(top_classes(opened, image, 3)) == 3


def test_the_command_draws_every_methods_map_of_a_photo(project, tmp_path, capsys) -> None:
    import json

    import cv2

    from wsseg.cli import main

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((120, 160, 3), 200, np.uint8))
    out = tmp_path / "maps"
    weights = project.root / "weights" / "mnv2.pth"
    argv = ["cams", "--image", str(photo), "--arch", "mobilenet_v2", "--weights", str(weights)]
    assert main([*argv, "--methods", "gradcam,eigencam", "--class", "tabby", "--out", str(out)]) == 0
    summary = json.loads((out / "maps.json").read_text())
    assert summary["class"] == "tabby" and set(summary["methods"]) == {"gradcam", "eigencam"}
    shape = cv2.imread(str(out / "gradcam.png")).shape[:2]  # the photo, enlarged a whole number of times
    assert shape[0] % 120 == 0 and shape == (shape[0], shape[0] * 160 // 120)
    assert main([*argv, "--class", "unicorn", "--out", str(out)]) == 2
    assert "unicorn" in capsys.readouterr().err
    assert (
        main(
            [
                "cams",
                "--image",
                str(photo),
                "--project",
                str(project.root),
                "--methods",
                "crm",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["cams"]) == 2 and "--project" in capsys.readouterr().err
