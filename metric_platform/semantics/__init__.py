"""Analytical contexts: the AC YAML, parsed by Pydantic models and validated into frozen specs."""
