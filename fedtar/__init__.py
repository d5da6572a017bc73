"""FedTAR: temporally-aware federated adaptation for longitudinal report generation."""

__version__ = "0.1.0"
