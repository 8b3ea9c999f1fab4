"""``wsseg app``: where the Streamlit app is installed, and the ``streamlit run`` that serves it.

The app (``app.py``, ``pages/``, ``.streamlit/config.toml``) installs as the package ``wsseg_app``
(pyproject.toml maps it onto the repository's root folder): ``site-packages/wsseg_app`` from a wheel,
the repository itself in an editable install. The core never imports streamlit: ``wsseg app`` becomes
a ``python -m streamlit run`` process (same process id, so stopping it stops the server).
"""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import os
import sys
import tomllib
from pathlib import Path

from wsseg.errors import WssegError


def app_folder() -> Path:
    """The folder holding ``app.py``, ``pages/`` and ``.streamlit/config.toml``.

    Found through ``wsseg_app.pages``: ``wsseg_app`` itself is a namespace package (the repository's
    root has no ``__init__.py``), which importlib.resources cannot open in an editable install.
    """
    try:
        pages = importlib.resources.files("wsseg_app.pages")
    except ModuleNotFoundError:
        raise WssegError("the app's files (package wsseg_app) are not installed; reinstall wsseg") from None
    folder = Path(str(pages)).parent
    if not (folder / "app.py").is_file():
        raise WssegError(f"{folder}: app.py is missing; reinstall wsseg")
    return folder


def streamlit_args(folder: Path, address: str, port: int) -> list[str]:
    """``streamlit`` command-line arguments running ``folder/app.py`` at ``address:port`` with the app's
    own ``.streamlit/config.toml`` given as flags, so an installed app runs as it does from the
    repository (Streamlit itself reads that file only from the current folder)."""
    options: dict[str, object] = {}
    config = folder / ".streamlit" / "config.toml"
    if config.is_file():
        for section, values in tomllib.loads(config.read_text()).items():
            options.update({f"{section}.{key}": value for key, value in values.items()})
    options.update({"server.address": address, "server.port": port})
    args = ["run", str(folder / "app.py")]
    for name, value in options.items():
        args += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return args


def run_from_args(args: argparse.Namespace) -> None:
    """Replace this process with the Streamlit server of the installed app, on ``args.project`` (else
    $WSSEG_PROJECT, else the pages' default), at ``args.address:args.port``; returns only on error."""
    if importlib.util.find_spec("streamlit") is None:
        raise WssegError("the app needs streamlit and its components: pip install 'wsseg[app]'")
    command = [sys.executable, "-m", "streamlit", *streamlit_args(app_folder(), args.address, args.port)]
    env = dict(os.environ)
    if args.project is not None:
        env["WSSEG_PROJECT"] = str(Path(args.project).resolve())
    sys.stdout.flush()
    os.execve(sys.executable, command, env)
