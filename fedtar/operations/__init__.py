"""Operating a run: its Flower processes, output folder, tracking, and the tables it prints."""
