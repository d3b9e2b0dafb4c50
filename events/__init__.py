"""The public contract: every message on every topic, as pydantic models.

The generated JSON Schema files in `events/schemas/` and `events/asyncapi.yaml` are the
exact form of the contract; `python -m events.generate` rewrites them from these models and
a test fails when they drift.
"""
