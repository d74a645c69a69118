"""Data: RLE codec, image IO, datasets, folds and the synthetic generator."""
