import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from wsseg.data.coco import CocoImage, decode_rle, encode_mask, read_coco, write_coco
from wsseg.errors import BadInputError


def random_instances(rng, h, w, n):
    masks = rng.random((n, h, w)) < 0.3  # ragged, many runs: a hard case for RLE
    masks[:, 0, 0] = True  # never empty
    return masks, rng.integers(0, 3, n)


def test_rle_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (33, 20)]:
        mask = rng.random(shape) < 0.5
        rle = encode_mask(mask)
        assert isinstance(rle["counts"], str)
        np.testing.assert_array_equal(decode_rle(rle), mask)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2
def test_write_read_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    images = [CocoImage(1, "a.png", 20, 12), CocoImage(7, "b.png", 9, 30), CocoImage(8, "c.png", 10, 10)]
    instances = [
        random_instances(rng, img.height, img.width, n) for img, n in zip(images, (3, 1, 0), strict=True)
    ]
    scores = [rng.random(len(m)) for m, _ in instances]
    path = tmp_path / "out.json"
    write_coco(path, images, ["cat", "dog", "bird"], iter(instances), scores)

    coco = COCO(str(path))  # pycocotools accepts the file
    assert len(coco.getAnnIds()) == 4 and sorted(coco.getImgIds()) == [1, 7, 8]
    np.testing.assert_array_equal(
        coco.annToMask(coco.loadAnns(coco.getAnnIds(imgIds=7))[0]), instances[1][0][0]
    )

    data = read_coco(path)
    assert data.problems == []
    assert data.categories == {1: "cat", 2: "dog", 3: "bird"}
    assert [img.id for img in data.images] == [1, 7, 8]
    for img, (masks, labels), image_scores in zip(data.images, instances, scores, strict=True):
        got = data.instances[img.id]
        assert len(got) == len(masks)
        for inst, mask, label, score in zip(got, masks, labels, image_scores, strict=True):
            np.testing.assert_array_equal(inst.mask, mask)
            assert inst.category == ["cat", "dog", "bird"][label]
            assert inst.score == pytest.approx(score)
            assert inst.area == mask.sum()
    assert data.tags(8) == ()


def polygon_doc():
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
        "categories": [{"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 3, "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]}
        ],
    }


def test_polygon_and_uncompressed_rle(tmp_path):
    doc = polygon_doc()
    doc["annotations"].append(
        {"id": 6, "image_id": 1, "category_id": 3, "segmentation": {"size": [10, 10], "counts": [0, 3, 97]}}
    )
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    data = read_coco(path)
    assert data.problems == []
    square, column = (inst.mask for inst in data.instances[1])
    assert square[2:6, 2:6].all() and not square[8:, 8:].any()
    assert column.sum() == 3 and column[:3, 0].all()  # column-major runs
    assert data.instances[1][0].bbox[2] > 0 and data.tags(1) == ("cat",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][0].update(image_id=99), "unknown image_id 99"),
        (lambda d: d["annotations"][0].update(category_id=4), "unknown category_id 4"),
        (lambda d: d["annotations"][0].pop("segmentation"), "missing 'segmentation'"),
        (lambda d: d["annotations"][0].update(bbox=[5, 5, 20, 20]), "outside"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 60, 1, 6, 6]]), "outside"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [11, 10], "counts": "PP"}), "differs"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2]]), "at least 3"),
        (lambda d: d["images"][0].pop("width"), "missing width"),
    ],
)
def test_bad_entries_are_dropped_with_one_problem(tmp_path, change, message):
    doc = polygon_doc()
    doc["images"].append({"id": 2, "file_name": "b.png", "width": 10, "height": 10})
    doc["annotations"].append(
        {"id": 9, "image_id": 2, "category_id": 3, "segmentation": [[0, 0, 3, 0, 3, 3]], "bbox": [0, 0, 3, 3]}
    )
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    data = read_coco(path)
    assert len(data.problems) == 1, data.problems
    assert message in data.problems[0].message and data.problems[0].source == "bad.json"
    assert [inst.id for inst in data.instances[2]] == [9]  # the good annotation survives


def test_missing_image_file_and_bad_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(polygon_doc()))
    data = read_coco(path, image_dir=tmp_path)
    assert data.images == [] and "a.png" in data.problems[0].source
    (tmp_path / "a.png").write_bytes(b"x")
    assert read_coco(path, image_dir=tmp_path).images[0].path == tmp_path / "a.png"
    path.write_text("{not json")
    with pytest.raises(BadInputError, match="not valid JSON"):
        read_coco(path)
    path.write_text("[]")
    with pytest.raises(BadInputError, match="'images' list"):
        read_coco(path)


def test_write_checks_shapes(tmp_path):
    with pytest.raises(BadInputError, match="expected"):
        write_coco(tmp_path / "x.json", [CocoImage(1, "a", 4, 4)], ["a"], [(np.zeros((1, 5, 5), bool), [0])])
