import numpy as np
import pytest
from PIL import Image

from wsseg.data.voc import IGNORE, masks_to_maps, read_voc_masks, voc_palette, write_voc
from wsseg.errors import BadInputError


def test_palette_matches_voc_colours():
    palette = voc_palette()
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128]  # person
    assert palette[255].tolist() == [224, 224, 192]  # the boundary colour


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 24, 31
    masks = np.zeros((4, h, w), bool)
    for k, mask in enumerate(masks):
        y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
        mask[y : y + 6 + k, x : x + 6] = True
    labels = np.array([2, 0, 5, 2])
    semantic, instance = masks_to_maps(masks, labels, (h, w))
    semantic[0, :] = IGNORE  # a boundary row
    sem_path, inst_path = write_voc(tmp_path, "img1", semantic, instance)
    assert Image.open(sem_path).mode == "P" and Image.open(inst_path).mode == "P"

    got = read_voc_masks(sem_path, inst_path)
    np.testing.assert_array_equal(got.semantic, semantic)
    np.testing.assert_array_equal(got.instance, instance)
    visible = [instance == k + 1 for k in range(len(masks))]  # later masks cover earlier ones
    kept = [k for k in range(len(masks)) if (visible[k] & (semantic != IGNORE)).any()]
    assert got.instance_ids.tolist() == [k + 1 for k in kept]
    np.testing.assert_array_equal(got.masks, np.stack([visible[k] for k in kept]))
    assert got.class_ids.tolist() == [labels[k] + 1 for k in kept]


def test_bad_maps(tmp_path):
    with pytest.raises(BadInputError, match="uint8"):
        write_voc(tmp_path, "x", np.zeros((3, 3), np.int32))
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(BadInputError, match="palette"):
        read_voc_masks(tmp_path / "rgb.png", tmp_path / "rgb.png")
    with pytest.raises(BadInputError, match="at most 254"):
        masks_to_maps(np.zeros((300, 2, 2), bool), [0] * 300, (2, 2))
