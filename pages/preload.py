"""The heavy libraries imported once, by one script thread at a time.

Streamlit runs each page in a thread of its own, and a click during a page's first run starts another
while the first is still importing torch: the second thread can then see torchvision half imported
("partially initialized module 'torchvision.models'") and the page shows an error. ``app.py`` calls
``preload`` before any page; this module stays in ``sys.modules``, so its lock is the same for every run.
"""

from __future__ import annotations

import importlib
import threading

_LOCK = threading.Lock()
MODULES = ("torch", "torchvision", "wsseg.models", "wsseg.methods.cams")


def preload() -> None:
    """Import ``MODULES`` under one lock (instant once they are imported)."""
    with _LOCK:
        for name in MODULES:
            importlib.import_module(name)
