"""The Learn page's shipped demo models and the small Mask R-CNN they use."""

import numpy as np
import pytest
import torch

from wsseg.data.shapes import SHAPE_CLASSES, ShapesConfig, generate
from wsseg.demo.models import DEMO_MASKRCNN, DEMO_METRICS, DEMO_PLE, demo_maskrcnn_config
from wsseg.errors import BadInputError
from wsseg.models.maskrcnn import MaskRCNNConfig, build_maskrcnn, predict, to_model_input
from wsseg.stages.evaluate_ple import predict as predict_labels
from wsseg.training.instance_data import mask_boxes
from wsseg.views.lesson_data import demo_scores, open_demo_maskrcnn, open_demo_ple


def test_the_small_mask_rcnn_trains_and_stays_under_a_million_parameters() -> None:
    model = build_maskrcnn(demo_maskrcnn_config(4))
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    sample = generate(ShapesConfig(seed=3), 0)
    target = {
        "boxes": mask_boxes(sample.masks),
        "labels": torch.as_tensor(sample.labels + 1),
        "masks": torch.from_numpy(sample.masks.astype(np.uint8)),
    }
    losses = model([to_model_input(sample.image)], [target])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    sum(losses.values()).backward()
    assert model.backbone.body["0"].weight.grad.abs().sum() > 0  # the from-scratch stem learns
    with pytest.raises(BadInputError, match="from scratch only"):
        MaskRCNNConfig(num_classes=4, backbone="small", weights="imagenet")


def test_the_shipped_demo_models_load_small_and_predict_at_the_image_size() -> None:
    assert DEMO_MASKRCNN.stat().st_size < 5_000_000 and DEMO_PLE.stat().st_size < 5_000_000
    model, classes = open_demo_maskrcnn()
    assert classes == list(SHAPE_CLASSES)
    image = generate(ShapesConfig(seed=0), 1).image
    found = predict(model, [image])[0]
    assert found.masks.shape[1:] == image.shape[:2] and np.all(np.diff(found.scores) <= 0)
    segmenter, labels = open_demo_ple()
    assert labels == ["background", *SHAPE_CLASSES]
    label_map, probs = predict_labels(segmenter, image)
    assert label_map.shape == image.shape[:2] and probs.shape == (5, *image.shape[:2])
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
    # The scores the Learn page shows are the ones the command measured, on 100 held-out images.
    assert DEMO_METRICS.is_file() and demo_scores()["held_out_images"] == 100
    assert 0 <= demo_scores()["maskrcnn"]["map50"] <= 1 and 0 <= demo_scores()["ple"]["miou"] <= 1
