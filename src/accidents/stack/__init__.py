"""Tooling for running the stack rather than the model: Prometheus' generated config and the
Celery workers' S3 hand-off of pipeline state."""
