"""Prefect flows over the DVC stages: training (weekly) and batch scoring (daily)."""
