"""The Project page, run headless with Streamlit's AppTest on a real demo project."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from wsseg.demo import create_demo_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "project"
    create_demo_project(root, n_images=30, seed=2)
    return root


def _app(project: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["project_root"] = str(project)
    return at.run()


def test_project_page_shows_the_demo_grid(demo: Path) -> None:
    at = _app(demo)
    assert not at.exception
    assert at.title[0].value == "Project"
    assert "30 images" in at.caption[0].value
    assert len(at.get("image")) == 24  # first page of the thumbnail grid
    captions = [c.value for c in at.caption]
    assert any("shapes_00000.png" in c for c in captions)


def test_tag_filter_and_paging_change_the_grid(demo: Path) -> None:
    from wsseg.store import Project

    project = Project(demo)
    at = _app(demo)
    at.selectbox(key="tag_filter").select("star").run()
    assert not at.exception
    n_star = project.count_images(tag="star")
    assert f"{n_star} image(s)" in " ".join(c.value for c in at.caption)
    assert len(at.get("image")) == min(n_star, 24)
    at.selectbox(key="tag_filter").select("(all)").run()
    at.number_input(key="page_number").set_value(2).run()
    assert len(at.get("image")) == 30 - 24
    assert any("shapes_00024.png" in c.value for c in at.caption)


def test_opening_a_missing_project_shows_an_error(demo: Path, tmp_path: Path) -> None:
    at = _app(demo)
    at.text_input[0].input(str(tmp_path / "nothing"))
    at.button[0].click().run()
    assert not at.exception
    assert any("not a wsseg project" in e.value for e in at.error)


def test_untagged_filter_shows_only_images_without_tags(demo: Path) -> None:
    from wsseg.store import Project

    n = Project(demo).count_images(untagged=True)
    at = _app(demo)
    at.selectbox(key="tag_filter").select("(untagged)").run()
    assert not at.exception
    assert f"{n} image(s)" in " ".join(c.value for c in at.caption)
    assert len(at.get("image")) == min(n, 24)
