"""Quiet-by-default Prefect settings, applied before Prefect is imported by a flow module."""

import os

# No telemetry or analytics unless the user asks for them (their environment wins).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
