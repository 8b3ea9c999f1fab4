"""What a page says when a pipeline step it needs has not run: the step, and a link to the pipeline
panel on the Project page, which runs it as a background job (no page ever needs a shell)."""

from __future__ import annotations

import streamlit as st

PROJECT_PAGE = "pages/project.py"


def missing_step(text: str, column: object = st) -> None:
    """``text`` (what is missing and which step makes it) as an info box, and the link to the panel."""
    column.info(text)
    column.page_link(
        PROJECT_PAGE, label="Run it from the pipeline panel (Project page)", icon=":material/play_circle:"
    )
