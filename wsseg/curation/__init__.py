"""Curation of pseudo masks: the review queue, the annotator's actions, and export."""
