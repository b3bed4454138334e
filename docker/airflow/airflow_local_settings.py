"""Airflow cluster policy of the scale-out stack (docker-compose.scale.yml mounts this file into
$AIRFLOW_HOME/config/ of every Airflow container): routes tasks to Celery queues by task id.

    ACCIDENTS_TASK_QUEUES="import_data=stage-a,preprocess=stage-b,..."   (empty: no routing)

Each worker listens to `default` plus its own queue (airflow celery worker --queues), so a
mapping pins a task to a worker (e.g. a GPU box for `train`); the stack's default alternates the
pipeline's stages between its two workers, so every hand-over between stages really goes through
the S3 store. Tasks not named keep their queue (`default`). The DAG file itself is unchanged.
"""

from __future__ import annotations

import os


def _queues() -> dict[str, str]:
    pairs = (item.partition("=") for item in os.environ.get("ACCIDENTS_TASK_QUEUES", "").split(","))
    return {task.strip(): queue.strip() for task, sep, queue in pairs if sep and task.strip() and queue.strip()}


def task_policy(task) -> None:
    queue = _queues().get(task.task_id)
    if queue:
        task.queue = queue
