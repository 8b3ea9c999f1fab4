"""Files shipped with wsseg, installed as the package ``wsseg.assets`` (see pyproject.toml) and read
with ``importlib.resources``: the demo classifier, the Learn page's demo Mask R-CNN and pixel-label
estimator, and their held-out scores. The screenshots are the README's and are not installed."""
