"""``wsseg app`` serves the installed app, and says how to install Streamlit when it is missing."""

import sys
import urllib.request
from pathlib import Path

import pytest

from tests.app.helpers import start_server
from wsseg.cli import main


def test_wsseg_app_serves_until_terminated(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path / "project")  # python -m wsseg app --project ... --port FREE
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as answer:
            assert answer.status == 200 and answer.read() == b"ok"
    finally:
        proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_wsseg_app_without_streamlit_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "streamlit", None)  # as if it were not installed
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'wsseg[app]'" in err
