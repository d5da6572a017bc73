"""What a site can check and is promised: its audit log, run pins, the base's hash, differential privacy."""
