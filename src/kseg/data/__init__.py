"""Data: RLE codec, image IO, datasets and folds.

- ``rle``: the RLE codec and its per-competition dialects (``RleDialect``);
- ``images``: image and mask reading; ``geometry``: fitting images to the model size and back;
- ``dataset``: labels and the torch ``Dataset``; ``folds``: ``folds.csv``, written (stratified) and read back.
"""
