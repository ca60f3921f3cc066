"""Shared bits of the test model builders: the fixture folder and default tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _c(array: np.ndarray) -> np.ndarray:
    """Make an array C-contiguous, keeping 0-d arrays 0-d (np.ascontiguousarray would not)."""
    return np.require(array, requirements="C")


def default_tensors() -> dict[str, np.ndarray]:
    """Return a small, varied set of tensors with recognisable bytes."""
    return {
        "embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "layer.0.bias": np.array([1.5, -2.0, 3.25], dtype=np.float16),
        "layer.0.steps": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalar": np.array(7, dtype=np.int32),
    }
