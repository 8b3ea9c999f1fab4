"""The Data page: browse with tag filter and paging, tag in the table (AppTest on a real demo project)."""

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import pages.common
from tests.app.helpers import ROOT, captions, open_page
from wsseg.demo.project import create_demo_project
from wsseg.store.project import Project


def test_the_first_page_of_thumbnails(demo: Path) -> None:
    at = open_page(demo, "pages/data.py")
    assert not at.exception
    assert at.title[0].value == "Data"
    assert len(at.get("image")) == 24
    assert "30 image(s) · page 1 of 2" in captions(at)
    assert "shapes_00000.png" in captions(at)


def test_tag_filter_and_paging_change_the_grid(demo: Path) -> None:
    n_star = Project(demo).count_images(tag="star")
    at = open_page(demo, "pages/data.py")
    at.selectbox(key="data_tag").select("star").run()
    assert not at.exception
    assert f"{n_star} image(s)" in captions(at)
    assert len(at.get("image")) == min(n_star, 24)
    at.selectbox(key="data_tag").select("(all)").run()
    at.number_input(key="data_page").set_value(2).run()
    assert len(at.get("image")) == 30 - 24
    assert "shapes_00024.png" in captions(at) and "shapes_00000.png" not in captions(at)


def test_tags_edited_in_the_table_are_saved(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_demo_project(root, n_images=6, seed=5)
    project = Project(root)
    first = project.images(limit=1)[0]
    at = open_page(root, "pages/data.py")
    editor = "tags_None_False_1_24"  # the table of page 1, unfiltered, 24 per page
    flip = "square" if "square" not in first.tags else "disc"
    at.session_state[editor] = {
        "edited_rows": {0: {flip: flip not in first.tags}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.button(key=f"{editor}_save").click().run()
    assert not at.exception
    assert set(project.image(first.id).tags) == set(first.tags) ^ {flip}
    assert any("Saved the tags of 1 image(s)" in s.value for s in at.success)


def test_a_new_class_can_be_added(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_demo_project(root, n_images=3, seed=6)
    at = open_page(root, "pages/data.py")
    at.text_input(key="new_class").input("hexagon")
    at.button(key="add_class").click().run()
    assert not at.exception
    assert "hexagon" in Project(root).classes()
    assert "hexagon" in at.selectbox(key="data_tag").options


def test_an_empty_project_says_how_to_add_images(tmp_path: Path) -> None:
    Project.create(tmp_path / "empty")
    at = open_page(tmp_path / "empty", "pages/data.py")
    assert not at.exception
    assert any("no images yet" in i.value for i in at.info)


def _by_link(project: str, page: str = "pages/data.py") -> AppTest:
    """A new browser session opened on a link (or a reload) whose URL holds ``?project=project``."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["project"] = project
    at.run()
    at.switch_page(page).run()
    return at


def test_the_project_lives_in_the_url_so_a_reload_stays_on_it(demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "other"
    create_demo_project(root, n_images=5, seed=7)
    at = open_page(root, "pages/data.py")  # chosen in this session (as the Project page does)
    assert at.query_params["project"] == str(root)  # ... and written into the URL
    reloaded = _by_link(at.query_params["project"])  # a reload: a new session, only the URL kept
    assert not reloaded.exception and not reloaded.warning
    assert "5 images" in captions(reloaded) and "5 image(s) · page 1 of 1" in captions(reloaded)
    assert reloaded.query_params["project"] == str(root)
    reloaded.switch_page("pages/cams.py").run()  # moving to another page keeps it
    assert reloaded.session_state["project_root"] == str(root)
    assert reloaded.query_params["project"] == str(root)


@pytest.mark.parametrize(
    ("link", "problem"),
    [("/no/such/folder", "does not exist on the server"), ("FOLDER", "is not a wsseg project")],
)
def test_a_bad_project_link_is_named_and_the_default_is_shown_instead(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str, problem: str
) -> None:
    monkeypatch.setattr(pages.common, "DEFAULT_PROJECT", demo)
    link = str(tmp_path) if link == "FOLDER" else link  # an existing folder without a project
    at = _by_link(link)
    assert not at.exception
    warning = at.warning[0].value
    assert f"`{link}`, {problem}" in warning and f"Showing the default project `{demo}` instead" in warning
    assert "30 image(s) · page 1 of 2" in captions(at)  # the default project, visibly
    assert at.query_params["project"] == str(demo)  # the URL now names what is shown
    assert not Path("/no/such/folder").exists()  # nothing was created for the bad link


def _png(value: int) -> bytes:
    return cv2.imencode(".png", np.full((32, 32, 3), value, np.uint8))[1].tobytes()  # MIN_SIDE


def test_an_import_shows_the_new_count_at_once(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_demo_project(root, n_images=3, seed=8)
    at = open_page(root, "pages/data.py")
    assert "3 image(s) · page 1 of 1" in captions(at)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as folder:
        for k in range(5):
            folder.writestr(f"images/new{k}.png", _png(40 * k + 10))
        folder.writestr("tags.csv", "filename,tags\n" + "".join(f"new{k}.png,disc\n" for k in range(5)))
    at.file_uploader(key="upload_files").set_value([("tagged.zip", archive.getvalue(), "application/zip")])
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception
    assert Project(root).count_images() == 8
    assert any(s.value == "Imported 5 image(s)." for s in at.success)  # the report, kept
    assert "8 images" in at.caption[0].value  # the counts above, without leaving the page
    assert "8 image(s) · page 1 of 1" in captions(at) and "new0.png" in captions(at)
    assert any("now 8 in the project" in s.value for s in at.success)
