"""Process environment defaults: telemetry off, offline hubs, deliberate thread counts."""

import os

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",  # MLflow ignores "1"
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def apply_defaults() -> None:
    """Set telemetry-off variables unless the user set them; never overrides."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
