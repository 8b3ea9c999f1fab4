"""wsseg: weakly-supervised segmentation from image-level tags.

The core is pure numpy/torch; the Streamlit app (``app.py``, ``pages/``) sits on top of it.
"""

__version__ = "0.1.0"
