"""How reports are scored: evaluation, the CheXpert labeler, the metrics and the change probe."""
