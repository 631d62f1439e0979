"""IMDB sentiment MLOps pipeline: ingest -> tokenize -> train -> evaluate -> export -> register."""

__version__ = "0.1.0"
