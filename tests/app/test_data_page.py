"""The Data page: browse with tag filter and paging, tag in the table (AppTest on a real demo project)."""

from pathlib import Path

from tests.app.helpers import captions, open_page
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
