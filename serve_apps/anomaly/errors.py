"""What the anomaly detector refuses, as exception types a caller can tell apart.

They cross the Ray boundary: a caller holding a ``DeploymentHandle`` catches
them by type (Ray raises a subclass of the original exception), so the API
can answer 400 for a bad batch and 503 when there is no model, without
reading messages.
"""

from __future__ import annotations


class AnomalyError(Exception):
    """Base of the detector's refusals; the message says what to do."""


class InvalidWindowsError(AnomalyError, ValueError):
    """The batch cannot be scored: wrong shape, NaN or infinite values, empty, or too many windows."""


class ModelUnavailableError(AnomalyError, RuntimeError):
    """No model is loaded: nothing is promoted yet, or every promoted version failed to load."""
