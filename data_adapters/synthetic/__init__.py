"""The embedded synthetic longitudinal federation (the platform's default data)."""

from .federation import SyntheticConfig, ensure_federation, generate_federation

__all__ = ["SyntheticConfig", "ensure_federation", "generate_federation"]
