import json

import numpy as np
import pytest

from wsseg.data.coco import read_coco
from wsseg.data.shapes import SHAPE_CLASSES, ShapesConfig, generate, write_shapes_dataset
from wsseg.data.tagged_folder import read_tagged_folder
from wsseg.errors import BadInputError

CONFIG = ShapesConfig(seed=3)


@pytest.fixture(scope="module")
def samples():
    return [generate(CONFIG, i) for i in range(60)]


def test_same_seed_same_sample_and_different_seed_differs():
    a, b = generate(CONFIG, 5), generate(CONFIG, 5)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, generate(ShapesConfig(seed=4), 5).image)
    assert not np.array_equal(a.image, generate(CONFIG, 6).image)


def test_default_difficulty(samples):
    s = samples[0]
    assert s.image.shape == (160, 160, 3) and s.image.dtype == np.uint8
    assert CONFIG.classes == ("disc", "square", "triangle", "star")
    assert (CONFIG.min_size, CONFIG.max_size) == (18, 50)
    counts = [len(s.masks) for s in samples]
    assert min(counts) >= 0 and max(counts) <= 6
    assert len(set(counts)) >= 4  # the count varies, 0 included now and then
    assert all(1 <= len(s.distractor_masks) <= 3 for s in samples)
    assert {int(v) for s in samples for v in s.labels} == {0, 1, 2, 3}


def test_masks_match_the_drawn_objects(samples):
    for s in samples:
        assert s.masks.shape == (len(s.labels), 160, 160) and s.masks.dtype == bool
        for mask, colour in zip(s.masks, s.colors, strict=True):
            assert mask.sum() >= CONFIG.min_area
            assert (s.clean_image[mask] == colour).all()
            # the colour was chosen to stand out: the ring just outside the mask differs from it
            ring = _dilate(mask) & ~mask
            assert (s.clean_image[ring] != colour).any(axis=1).mean() > 0.9


def _dilate(mask):
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def test_masks_and_distractors_are_disjoint_and_present(samples):
    for s in samples:
        every = np.concatenate([s.masks, s.distractor_masks]).astype(int)
        assert every.sum(axis=0).max() <= 1
        assert all(d.sum() > 0 for d in s.distractor_masks)


def test_tags_centres_and_boxes(samples):
    for s in samples:
        assert s.tags == tuple(sorted({CONFIG.classes[i] for i in s.labels}))
        for mask, (cx, cy), (x0, y0, x1, y1) in zip(s.masks, s.centers, s.boxes, strict=True):
            ys, xs = np.nonzero(mask)
            assert cx == pytest.approx(xs.mean()) and cy == pytest.approx(ys.mean())
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_occlusion_and_noise(samples):
    assert all((s.image != s.clean_image).any() for s in samples)
    fractions = np.concatenate([s.visible for s in samples])
    assert fractions.min() >= CONFIG.min_visible
    for s, k in ((x, k) for x in samples for k in range(len(x.masks))):
        mask = s.masks[k]
        others = np.concatenate([np.delete(s.masks, k, axis=0), s.distractor_masks]).any(axis=0)
        inside = not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        if inside and s.visible[k] < 0.9 and (_dilate(mask) & others).any():
            return  # an instance partly hidden by another object
    raise AssertionError("no occluded instance in 60 images")


def test_teaching_preset_is_easier():
    config = ShapesConfig.teaching()
    for i in range(20):
        s = generate(config, i)
        np.testing.assert_array_equal(s.image, s.clean_image)  # no noise, no illumination
        assert len(s.distractor_masks) == 0 and 1 <= len(s.masks) <= 4
        background = s.image[~s.masks.any(axis=0)]
        assert (background == background[0]).all()  # plain


def test_config_validation_and_json_round_trip():
    with pytest.raises(BadInputError, match="classes"):
        ShapesConfig(classes=("hexagon",))
    with pytest.raises(BadInputError, match="min_size"):
        ShapesConfig(min_size=60, max_size=50)
    config = ShapesConfig(seed=9, classes=SHAPE_CLASSES[:2])
    assert ShapesConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    s = generate(config, 0)
    assert set(s.labels.tolist()) <= {0, 1}


def test_write_dataset(tmp_path):
    config = ShapesConfig(seed=1, height=64, width=72, min_size=12, max_size=24, min_area=20)
    out = write_shapes_dataset(tmp_path / "shapes", 6, config)
    folder = read_tagged_folder(out)
    assert folder.problems == [] and len(folder.items) == 6
    coco = read_coco(out / "annotations.json", out / "images")
    assert coco.problems == []
    for k, (item, image) in enumerate(zip(folder.items, coco.images, strict=True)):
        sample = generate(config, k)
        np.testing.assert_array_equal(item.load(), sample.image)
        assert item.tags == sample.tags == coco.tags(image.id)
        got = coco.instances[image.id]
        np.testing.assert_array_equal(np.array([i.mask for i in got]).reshape(-1, 64, 72), sample.masks)
    saved = json.loads((out / "shapes_config.json").read_text())
    assert saved["n"] == 6 and ShapesConfig.from_dict(saved["config"]) == config
