"""Backends: one interface (``base.Backend``), implemented by the embedded engine and by W&B Launch."""
