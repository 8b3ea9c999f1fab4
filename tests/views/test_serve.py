"""The installed app is found through its package, and served with its own Streamlit config."""

import tomllib

from wsseg.demo.project import DEMO_CHECKPOINT
from wsseg.views.serve import app_folder, streamlit_args


def test_the_app_and_the_shipped_files_are_found_through_their_packages() -> None:
    folder = app_folder()
    assert (folder / "app.py").is_file() and (folder / "pages" / "curate.py").is_file()
    assert DEMO_CHECKPOINT.is_file() and DEMO_CHECKPOINT.parent.name == "assets"


def test_streamlit_args_run_app_py_with_its_config_and_the_given_address() -> None:
    folder = app_folder()
    args = streamlit_args(folder, "0.0.0.0", 8765)
    assert args[:2] == ["run", str(folder / "app.py")]
    flags = dict(zip(args[2::2], args[3::2], strict=True))
    config = tomllib.loads((folder / ".streamlit" / "config.toml").read_text())
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.maxUploadSize"] == str(config["server"]["maxUploadSize"])
    assert flags["--server.address"] == "0.0.0.0" and flags["--server.port"] == "8765"
