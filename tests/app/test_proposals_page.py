"""The Proposals and pseudo masks page (AppTest on real projects: the untrained demo, and the
``proposed`` project with a classifier, a peaks run and a proposals run made by the CLI)."""

from pathlib import Path

from tests.app.helpers import captions, image_urls, open_page
from wsseg.methods.pseudo_masks import RetrievalConfig
from wsseg.store.project import Project
from wsseg.views.retrieval import load_candidates, newest_runs, rank_proposals

PAGE = "pages/proposals.py"


def test_without_runs_the_page_names_the_missing_steps_and_links_the_panel(demo: Path) -> None:
    at = open_page(demo, PAGE)
    assert not at.exception
    text = " ".join(i.value for i in at.info)
    assert "Peaks and PRMs" in text and "Proposals" in text and "wsseg" not in text
    assert [link.proto.page for link in at.get("page_link")] == ["project"]


def _expected(project: Path, peak_index: int, **config) -> list[int]:
    """The proposal indices the page should list first for the first image's ``peak_index``."""
    store = Project(project)
    peaks_run, proposals_run = newest_runs(store)
    cands = load_candidates(store, store.images(limit=1)[0], peaks_run.id, proposals_run.id)
    return [r["proposal"] for r in rank_proposals(cands, peak_index, RetrievalConfig(**config)).rows[:10]]


def _table(at) -> list[int]:
    return [int(v) for v in at.dataframe[0].value["proposal"]]


def test_the_page_ranks_the_proposals_of_a_peak(proposed: Path) -> None:
    at = open_page(proposed, PAGE)
    assert not at.exception
    assert at.title[0].value == "Proposals and pseudo masks"
    assert "proposals from proposals run" in captions(at) and "Viewer rendered in" in captions(at)
    peak = at.selectbox(key="pm_peak").value
    assert _table(at) == _expected(proposed, peak)
    assert list(at.dataframe[0].value.columns[:6]) == [
        "rank",
        "proposal",
        "score",
        "alpha x inside",
        "contour",
        "-beta x background",
    ]
    assert len(at.get("plotly_chart")) == 1
    assert len(image_urls(at)) == 4  # PRM, background, PRM strategy's mask, WISE's mask
    assert any(m.value.startswith("**WISE strategy**") for m in at.markdown)


def test_moving_beta_re_ranks_and_the_controls_change_the_pictures(proposed: Path) -> None:
    at = open_page(proposed, PAGE)
    # a peak whose ten best proposals change between beta 0 and 1 (by the core, computed directly)
    peaks = at.selectbox(key="pm_peak").options
    peak = next(
        k for k in range(len(peaks)) if _expected(proposed, k, beta=0.0) != _expected(proposed, k, beta=1.0)
    )
    at.selectbox(key="pm_peak").set_value(peak).run()
    at.select_slider(key="pm_beta").set_value(0.0).run()
    before, pictures = _table(at), image_urls(at)
    assert before == _expected(proposed, peak, beta=0.0)
    at.select_slider(key="pm_beta").set_value(1.0).run()
    assert not at.exception
    after = _table(at)
    assert after == _expected(proposed, peak, beta=1.0) and after != before
    at.slider(key="pm_bg").set_value(1.5).run()
    assert _table(at) == _expected(proposed, peak, beta=1.0, bg=1.5)
    assert image_urls(at)[1] != pictures[1]  # the background map follows bg
    at.radio(key="pm_point").set_value("peak").run()
    assert not at.exception and "point: the peak itself" in " ".join(m.value for m in at.markdown)
    at.selectbox(key="pm_rank").select(2).run()
    assert any(
        "rank 2 · proposal" in c for c in [i.caption for img in at.get("image") for i in img.proto.imgs]
    )


def test_choosing_another_peak_changes_the_ranking(proposed: Path) -> None:
    at = open_page(proposed, PAGE)
    options = at.selectbox(key="pm_peak").options
    assert len(options) >= 2
    at.selectbox(key="pm_peak").set_value(1).run()
    assert not at.exception
    assert _table(at) == _expected(proposed, 1)
