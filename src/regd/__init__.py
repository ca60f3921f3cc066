"""regd: a model registry daemon for people who train models on their own machines."""

__version__ = "0.1.0"
