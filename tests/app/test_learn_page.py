"""The Learn page, headless (Streamlit's AppTest): every step runs, reveals its picture and judges
exactly one answer right; its controls change what is shown; Back and Next move through the steps."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from tests.app.helpers import ROOT, image_urls
from wsseg.demo.models import DEMO_MASKRCNN, DEMO_PLE
from wsseg.views.lesson import STEPS
from wsseg.views.lesson import step as lesson_step


@pytest.fixture()
def at(lesson: Path) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.session_state["project_root"] = str(lesson)
    app.session_state["lesson_root"] = str(lesson)
    app.run()
    app.switch_page("pages/learn.py").run()
    assert not app.exception
    return app


def _go(at: AppTest, key: str) -> None:
    at.selectbox(key="learn_step").set_value([s.key for s in STEPS].index(key)).run()
    assert not at.exception, at.exception
    assert at.header[0].value == next(s.title for s in STEPS if s.key == key)


def _verdicts(at: AppTest) -> tuple[int, int]:
    return len(at.success), len(at.warning)


def test_every_step_reveals_its_picture_and_one_answer_is_right(at: AppTest) -> None:
    assert DEMO_MASKRCNN.is_file() and DEMO_PLE.is_file(), "the shipped demo models are missing"
    for step in STEPS:
        _go(at, step.key)
        shown = len(image_urls(at))
        assert shown >= 1 and _verdicts(at) == (0, 0)  # the image to guess about; nothing judged yet
        assert any("Make your guess" in i.value for i in at.info)
        at.button(key=f"learn_reveal_{step.key}").click().run()
        assert not at.exception, at.exception
        assert len(image_urls(at)) == shown + 1, step.key  # the revealed picture
        assert _verdicts(at) == (0, 1) and at.warning[0].value.startswith("No guess made.")
        right = []
        for key, _ in step.choices:
            at.button(key=f"learn_again_{step.key}").click().run()  # Try again: a fresh guess
            assert _verdicts(at) == (0, 0) and at.radio(key=f"learn_answer_{step.key}").value is None
            at.radio(key=f"learn_answer_{step.key}").set_value(key).run()
            at.button(key=f"learn_reveal_{step.key}").click().run()
            assert not at.exception, at.exception
            if _verdicts(at) == (1, 0):
                right.append(key)
                assert at.success[0].value.startswith("Right.")
            else:
                assert _verdicts(at) == (0, 1) and at.warning[0].value.startswith("Not this time")
        assert len(right) == 1, (step.key, right)


def test_a_revealed_verdict_stays_until_try_again_or_moving_on(at: AppTest) -> None:
    _go(at, "peaks")
    guess = at.radio(key="learn_answer_peaks")
    wrong = next(k for k, _ in lesson_step("peaks").choices if k != "same")
    guess.set_value(wrong).run()
    at.button(key="learn_reveal_peaks").click().run()
    verdict = (at.success or at.warning)[0].value
    assert at.radio(key="learn_answer_peaks").proto.disabled  # the guess is locked once revealed
    with pytest.raises(AppTestError, match="disabled"):
        at.radio(key="learn_answer_peaks").set_value("same")
    at.selectbox(key="learn_window").set_value(15).run()  # a control moved after the reveal
    assert (at.success or at.warning)[0].value == verdict  # not judged again
    assert any(i.value.startswith("With the settings now: ") for i in at.info)
    at.button(key="learn_next").click().run()  # moving on ...
    at.button(key="learn_back").click().run()  # ... and back: asked afresh
    assert _verdicts(at) == (0, 0) and at.radio(key="learn_answer_peaks").value is None
    assert not at.radio(key="learn_answer_peaks").proto.disabled


def _kept(text: str) -> int:
    return int(text.split(" it keeps ")[1].split(" ")[0])


def _reveal(at: AppTest, key: str) -> None:
    _go(at, key)
    at.button(key=f"learn_reveal_{key}").click().run()


def _now(at: AppTest) -> str:
    """What the settings moved after the reveal give (said beside the fixed verdict)."""
    return next(i.value for i in at.info if i.value.startswith("With the settings now: "))


def test_controls_change_what_is_shown(at: AppTest) -> None:
    _reveal(at, "cam")
    before = image_urls(at)
    at.selectbox(key="learn_colormap").set_value("viridis").run()
    assert image_urls(at)[0] == before[0] and image_urls(at)[1] != before[1]  # only the revealed map

    _reveal(at, "peaks")
    wide = _now(at.selectbox(key="learn_window").set_value(15).run())
    narrow = _now(at.selectbox(key="learn_window").set_value(1).run())
    assert wide != narrow  # a different number of peaks, told beside the verdict

    _reveal(at, "maskrcnn")
    assert "At threshold 0.50 it keeps" in at.warning[0].value  # judged with the threshold of the reveal
    low = _now(at.slider(key="learn_score").set_value(0.05).run())
    high = _now(at.slider(key="learn_score").set_value(0.95).run())
    assert "At threshold 0.05 it keeps" in low and "At threshold 0.95 it keeps" in high
    assert _kept(low) > _kept(high)
    assert "At threshold 0.50 it keeps" in at.warning[0].value  # the verdict has not moved

    _reveal(at, "ple")
    labels = image_urls(at)
    at.radio(key="learn_ple_view").set_value(at.radio(key="learn_ple_view").options[1]).run()
    assert image_urls(at)[1] != labels[1] and not at.exception


def test_back_and_next_move_through_the_steps(at: AppTest) -> None:
    assert at.header[0].value == STEPS[0].title
    at.button(key="learn_next").click().run()
    at.button(key="learn_next").click().run()
    assert at.header[0].value == STEPS[2].title
    at.button(key="learn_back").click().run()
    assert at.header[0].value == STEPS[1].title and not at.exception
