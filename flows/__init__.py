"""Prefect flows: the campaign DAGs. They compose tasks from ``tasks`` and never hold logic of their own."""
