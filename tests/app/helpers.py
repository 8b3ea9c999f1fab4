"""Running the real app headless with Streamlit's AppTest on a given project and page."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def open_page(project: Path, page: str | None = None) -> AppTest:
    """The app on ``project``, showing ``page`` (e.g. "pages/data.py"; None: the default page)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["project_root"] = str(project)
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def image_urls(at: AppTest) -> list[str]:
    """The media URLs of the shown images (they change when the pictures' bytes change)."""
    return [img.url for element in at.get("image") for img in element.proto.imgs]
