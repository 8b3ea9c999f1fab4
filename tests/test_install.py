"""The wheel holds what an installed wsseg needs outside the repository: every module, the shipped
files of ``assets/`` (as ``wsseg/assets``) and the app (``app.py``, ``pages/``, its Streamlit config,
as ``wsseg_app``). Built from a copy of the sources, so the checkout gets no ``build/`` folder."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "app.py", ".streamlit", "pages", "wsseg", "assets"]


def test_the_wheel_ships_every_module_the_assets_and_the_app(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("wsseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "wsseg").rglob("*.py")}
    assert modules - names == set(), "a package is missing from [tool.setuptools] packages"
    for asset in ("demo-classifier.pt", "demo-maskrcnn.pt", "demo-ple.pt", "demo-models.json"):
        assert f"wsseg/assets/{asset}" in names
    assert not any(n.endswith(".png") for n in names), "the README's screenshots are not installed"
    pages = {f"wsseg_app/pages/{p.name}" for p in (ROOT / "pages").glob("*.py")}
    assert pages | {"wsseg_app/app.py", "wsseg_app/.streamlit/config.toml"} <= names
    info = wheel.name.split("-py3")[0] + ".dist-info"
    assert {n.split("/")[0] for n in names} == {"wsseg", "wsseg_app", info}
    assert b"wsseg = wsseg.cli:main" in zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt")
