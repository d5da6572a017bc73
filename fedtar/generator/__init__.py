"""The report generator: the model, its adapters, backbones and change head, and what of it travels."""
