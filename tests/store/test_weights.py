"""The project's weights files: what the Train and CAM pages offer as pretrained starts."""

from pathlib import Path

from wsseg.store.project import Project
from wsseg.store.weights import WEIGHTS_DIR, weight_files


def test_weights_files_are_the_pt_and_pth_files_of_the_weights_folder(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    assert weight_files(project) == []  # no folder yet
    folder = project.root / WEIGHTS_DIR
    folder.mkdir()
    for name in ("resnet.pth", "a.pt", "notes.txt", "b.pth.tmp"):
        (folder / name).write_bytes(b"x")
    (folder / "dir.pth").mkdir()  # a folder named like a file is not one
    assert [p.name for p in weight_files(project)] == ["a.pt", "resnet.pth"]
    assert all(p.parent == folder for p in weight_files(project))
