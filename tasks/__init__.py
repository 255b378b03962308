"""Prefect tasks, one verb per module. Each adds retries, cache keys, logging and artifacts around a call into
the Prefect-free core in ``sweepflow``."""
