"""The monitoring jobs (run by the monitoring and new-data DAGs): drift, realized performance,
replay of real accidents, the retraining decision and the new-data check."""
