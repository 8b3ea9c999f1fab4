import json

import numpy as np
import pytest
from PIL import Image

from wsseg.data.real import (
    CAMVID_CLASSES,
    CAMVID_IGNORE,
    camvid,
    camvid_tags,
    default_data_root,
    nuclei_images,
    nuclei_split,
    nuclei_tiles,
)
from wsseg.errors import DataNotFoundError


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def fake_nuclei(tmp_path):
    """Two images in the DSB 2018 layout: an RGBA 40x70 with two nuclei, an RGB 32x32 with none."""
    base = tmp_path / "nuclei-dsb2018" / "stage1_test"
    rgba = np.zeros((40, 70, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 90, 255
    save(base / "aaa" / "images" / "aaa.png", rgba)
    first = np.zeros((40, 70), np.uint8)
    first[2:6, 3:8] = 255  # inside tile (0, 0)
    second = np.zeros((40, 70), np.uint8)
    second[10:25, 25:40] = 255  # straddles tiles (0, 0) and (32, 0)
    save(base / "aaa" / "masks" / "aaa_10.png", second)
    save(base / "aaa" / "masks" / "aaa_2.png", first)
    save(base / "bbb" / "images" / "bbb.png", np.full((32, 32, 3), 7, np.uint8))
    (base / "bbb" / "masks").mkdir()
    return tmp_path


def test_missing_data_root_names_the_path(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"nuclei-dsb2018 not found at .*nowhere"):
        next(nuclei_tiles(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="trainannot"):
        next(camvid(tmp_path / "nowhere"))


def test_env_var_sets_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSEG_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("WSSEG_DATA")
    assert default_data_root().parts[-2:] == ("shared", "data")


def test_nuclei_whole_images(fake_nuclei):
    items = list(nuclei_images(fake_nuclei))
    assert [i.id for i in items] == ["aaa", "bbb"]
    aaa = items[0]
    assert aaa.image.shape == (40, 70, 3) and (aaa.image == [90, 0, 0]).all()
    assert aaa.masks.shape == (2, 40, 70)
    assert aaa.masks[0].sum() == 20 and aaa.masks[1].sum() == 225  # numeric order: _2 before _10
    assert items[1].masks.shape == (0, 32, 32)


def test_nuclei_tiles(fake_nuclei):
    tiles = list(nuclei_tiles(fake_nuclei, tile=32))
    assert [(t.image_id, t.box) for t in tiles] == [
        ("aaa", (0, 0, 32, 32)),
        ("aaa", (32, 0, 64, 32)),
        ("bbb", (0, 0, 32, 32)),
    ]
    first, second, empty = tiles
    assert first.tags == ("nucleus",) and first.masks.shape == (2, 32, 32)
    assert (
        first.masks[1].sum() == 15 * 7
        and second.masks.shape == (1, 32, 32)
        and second.masks[0].sum() == 15 * 8
    )
    assert empty.tags == () and empty.masks.shape == (0, 32, 32)
    assert first.image.shape == (32, 32, 3)
    splits = nuclei_split(["aaa", "bbb"], split_seed=0, val_fraction=0.5)
    assert sorted(splits.values()) == ["train", "val"]
    val = list(nuclei_tiles(fake_nuclei, tile=32, split="val", val_fraction=0.5))
    assert {t.image_id for t in val} == {k for k, v in splits.items() if v == "val"}


@pytest.fixture
def fake_camvid(tmp_path):
    base = tmp_path / "camvid"
    labels = np.full((36, 48), 3, np.uint8)  # road
    labels[:10] = 0  # sky, top rows
    labels[30:, :] = CAMVID_IGNORE
    labels[20, 0] = 8  # a single car pixel: under 0.5%
    for split in ("train", "val"):
        for name in ("a.png", "b.png"):
            save(base / split / name, np.full((36, 48, 3), 50, np.uint8))
            save(base / f"{split}annot" / name, labels)
    return tmp_path


def test_camvid_whole_and_crops(fake_camvid):
    whole = list(camvid(fake_camvid, "val"))
    assert [s.name for s in whole] == ["a.png", "b.png"]
    assert whole[0].tags == ("Sky", "Road") and whole[0].box == (0, 0, 48, 36)
    crops = list(camvid(fake_camvid, "train", crop=16, crop_seed=1, crops_per_image=3))
    assert len(crops) == 6
    again = list(camvid(fake_camvid, "train", crop=16, crop_seed=1, crops_per_image=3))
    assert [c.box for c in crops] == [c.box for c in again]
    for c in crops:
        x0, y0, x1, y1 = c.box
        assert c.image.shape == (16, 16, 3) and (x1 - x0, y1 - y0) == (16, 16)
        assert c.tags == camvid_tags(c.labels)


def test_camvid_tags_ignore_unlabelled():
    labels = np.full((10, 20), CAMVID_IGNORE, np.uint8)
    assert camvid_tags(labels) == ()
    labels[0, 0] = 5
    assert camvid_tags(labels) == (CAMVID_CLASSES[5],)  # 100% of the labelled pixels


@pytest.fixture
def fake_coco(tmp_path):
    """coco-train100 in small: 6 photos of 40x64 (ids 11..16), categories 3 "cat" (two photos),
    5 "dining table" (one photo, a 2x2 patch) and 7 "kite" (none)."""
    from wsseg.data.coco import write_coco

    base = tmp_path / "coco-train100"
    images, instances = [], []
    for k in range(6):
        name = f"{k:012d}.jpg"
        save(base / "images" / name, np.full((40, 64, 3), 30 * k, np.uint8))
        images.append({"id": 11 + k, "file_name": name, "width": 64, "height": 40})
        masks = np.zeros((0, 40, 64), bool)
        labels: list[int] = []
        if k < 2:
            masks = np.zeros((1, 40, 64), bool)
            masks[0, 10:30, 5 + 20 * k : 25 + 20 * k] = True
            labels = [0]
        if k == 2:
            masks = np.zeros((1, 40, 64), bool)
            masks[0, 0:2, 0:2] = True
            labels = [1]
        instances.append((masks, labels))
    doc = write_coco(base / "instances.json", images, ["cat", "dining table", "kite"], instances)
    ids = {1: 3, 2: 5, 3: 7}  # COCO's own ids are not 1..K
    for entry in doc["categories"] + doc["annotations"]:
        key = "id" if "name" in entry else "category_id"
        entry[key] = ids[entry[key]]
    (base / "instances.json").write_text(json.dumps(doc))
    return tmp_path


def test_coco_photos_keep_ids_names_tags_and_masks(fake_coco):
    from wsseg.data.real import coco_classes, coco_photos

    assert coco_classes(fake_coco) == ("cat", "dining table")  # "kite" has no instance
    photos = list(coco_photos(fake_coco))
    assert [p.id for p in photos] == [11, 12, 13, 14, 15, 16]
    assert photos[0].file_name == "000000000000.jpg"
    assert photos[0].tags == ("cat",) and photos[2].tags == ("dining table",) and photos[3].tags == ()
    assert photos[1].masks.shape == (1, 40, 64) and photos[1].masks[0, 10:30, 25:45].all()
    assert photos[1].masks.sum() == 20 * 20
    assert photos[2].labels.tolist() == [1]


def test_coco_photos_downscale_with_their_masks(fake_coco):
    from wsseg.data.real import coco_photos

    photos = list(coco_photos(fake_coco, ids={12, 13}, max_side=32))
    assert [p.id for p in photos] == [12, 13]
    assert photos[0].image.shape == (20, 32, 3)
    assert photos[0].masks.shape == (1, 20, 32)
    assert photos[0].masks.sum() == pytest.approx(100, abs=12)  # 20x20 at half size
    # the 2x2 patch survives the halving as one pixel, or is dropped with its label, never empty
    assert len(photos[1].masks) == len(photos[1].labels)
    assert all(m.any() for m in photos[1].masks)
    assert photos[1].tags == ("dining table",)  # the tag stays: the photo shows the class


def test_coco_split_is_seeded_and_disjoint(fake_coco):
    from wsseg.data.real import coco_photo_split

    a, b = coco_photo_split(fake_coco, seed=0), coco_photo_split(fake_coco, seed=0)
    assert a == b
    assert a["train"] | a["val"] == set(range(11, 17)) and not a["train"] & a["val"]
    assert len(a["val"]) == 2
    others = [coco_photo_split(fake_coco, seed=s)["val"] for s in range(1, 8)]
    assert any(v != a["val"] for v in others)


def test_missing_coco_names_the_folder(tmp_path):
    from wsseg.data.real import coco_photos

    with pytest.raises(DataNotFoundError, match="coco-train100"):
        next(coco_photos(tmp_path))
