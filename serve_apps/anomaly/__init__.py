"""The anomaly model on Ray Serve: the ``AnomalyDetector`` deployment and what it returns.

``deployment`` holds the deployment (batched scoring, hot reload, options
from settings), ``slot`` the loaded model and its replacement when another
version is promoted, ``windows`` the newest feature window of a symbol, and
``errors`` the refusals a caller tells apart by type.
"""

from serve_apps.anomaly.deployment import (
    AnomalyDetector,
    AnomalyScores,
    LatestScores,
    SymbolAnomaly,
    build_detector,
    detector_options,
)
from serve_apps.anomaly.errors import AnomalyError, InvalidWindowsError, ModelUnavailableError
from serve_apps.anomaly.slot import LoadedModel, LoadFailure, ModelSlot

__all__ = [
    "AnomalyDetector",
    "AnomalyError",
    "AnomalyScores",
    "InvalidWindowsError",
    "LatestScores",
    "LoadFailure",
    "LoadedModel",
    "ModelSlot",
    "ModelUnavailableError",
    "SymbolAnomaly",
    "build_detector",
    "detector_options",
]
