"""``wsseg.store.instances.tag_agreement``: what a project without ground truth measures of a model,
counted by hand on a real project's tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsseg.demo.project import create_demo_project
from wsseg.store.instances import tag_agreement
from wsseg.structures import Instances


def test_tag_agreement_counts_the_predicted_classes_against_the_tags(tmp_path: Path) -> None:
    project = create_demo_project(tmp_path / "p", n_images=5, seed=3)
    classes = project.classes()
    records = project.images()
    wanted = {}  # image id -> (labels, scores) the "model" gives it
    for k, record in enumerate(records):
        tagged = [classes.index(t) for t in record.tags]
        absent = [c for c in range(len(classes)) if c not in tagged]
        if k % 2 == 0:  # every tag found, one absent class too, and one below the threshold
            wanted[record.id] = (tagged + absent[:2], [0.9] * len(tagged) + [0.8, 0.2][: len(absent[:2])])
        else:  # nothing found
            wanted[record.id] = ([], [])
    calls = []

    def predict(images: list[np.ndarray]) -> list[Instances]:
        out = []
        for image in images:
            record = records[len(calls)]
            assert image.shape == (record.height, record.width, 3)
            labels, scores = wanted[record.id]
            masks = np.zeros((len(labels), *image.shape[:2]), bool)
            out.append(Instances(masks, np.array(labels, np.int64), np.array(scores, np.float64)))
            calls.append(record.id)
        return out

    done = []
    metrics, predictions = tag_agreement(
        project, predict, None, 0.5, batch_size=2, progress=lambda *a: done.append(a)
    )
    assert calls == [r.id for r in records] and set(predictions) == set(calls)
    assert done == [(2, 5), (4, 5), (5, 5)]
    even = records[0::2]
    hits = sum(len(r.tags) for r in even)
    predicted = hits + sum(1 for r in even if len(r.tags) < len(classes))  # the absent class above 0.5
    assert metrics["against"] == "tags" and metrics["images"] == 5
    assert metrics["tag_precision"] == hits / predicted
    assert metrics["tag_recall"] == hits / sum(len(r.tags) for r in records)
    assert metrics["instances_per_image"] == predicted / 5
