"""The embedded backend's own wing: everything private to running sweeps on this machine.

``controller`` (the sweep's scheduler), ``agent`` (claims queued runs and runs them), ``runner`` (one run as a
subprocess), ``txlog`` (reads a run's offline W&B log), ``search`` (W&B's search engine behind a small base),
``command`` (a run's argv, as W&B's agent builds it), ``registry`` (Launch job names to local programs),
``drive`` (the loop that runs a controller and its agents) and ``processes`` (liveness of local processes).
:mod:`sweepflow.backends.local` is the façade the rest of sweepflow uses.
"""
