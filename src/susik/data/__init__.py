"""Data engine: corpus, rendering, photo degradations, page composition, datasets."""
