"""The classifier's label names: index 0 is negative, 1 is positive, everywhere in the pipeline."""

LABELS: tuple[str, str] = ("negative", "positive")
