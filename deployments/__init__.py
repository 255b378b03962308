"""The demo campaign and its deployments' specs, installed as ``sweepflow.deployments`` (package data).

``sweepflow demo`` and ``sweepflow init`` read these files through :mod:`importlib.resources`, so they work from
a wheel as well as from a checkout; ``prefect.yaml`` names them by their path in the checkout.
"""
