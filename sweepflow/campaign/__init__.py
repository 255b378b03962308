"""What a campaign does between sweeps, without Prefect: runs as DataFrames (``analysis``), the next stage's
space (``derive``), a stage's plan or skip (``plan``), results (``results``) and plots (``report``)."""
