"""``wsseg.progress.image_bar``: a stage's ``progress(done, total)`` drawn as a bar, closed on exit."""

from __future__ import annotations

import pytest

from wsseg.progress import image_bar


def test_the_bar_follows_done_and_total(capsys: pytest.CaptureFixture[str]) -> None:
    with image_bar("peaks") as progress:
        progress(1, 4)
        progress(4, 4)
    drawn = capsys.readouterr().err
    assert "peaks" in drawn and "4/4" in drawn


def test_the_bar_is_closed_when_the_stage_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError), image_bar("proposals") as progress:
        progress(2, 5)
        raise ValueError("stage failed")
    drawn = capsys.readouterr().err
    assert "2/5" in drawn and drawn.endswith("\n")  # closed: the bar's line is ended
