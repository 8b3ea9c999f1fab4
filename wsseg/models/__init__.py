"""Models: backbones (``backbones.py``) and the peak classifier producing class response maps."""

from wsseg.models.backbones import BACKBONES, build_backbone
from wsseg.models.classifier import ClassifierConfig, PeakClassifier
from wsseg.models.normalise import normalize

__all__ = ["BACKBONES", "ClassifierConfig", "PeakClassifier", "build_backbone", "normalize"]
