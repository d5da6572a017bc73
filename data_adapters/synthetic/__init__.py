"""The embedded synthetic longitudinal federation (the platform's default data)."""

from .federation import SyntheticConfig, federation_manifests, generate_federation

__all__ = ["SyntheticConfig", "federation_manifests", "generate_federation"]
