"""How a model learns: the one local training loop, the base's pretraining, and the temporal policy."""
