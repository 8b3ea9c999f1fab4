"""The demo project and the demo models shipped in ``assets/``."""
