"""Data sources turned into canonical per-site exam manifests."""
