"""Inference: fold/model ensembles with TTA, streamed over the test set.

- ``ensemble``: ``Ensemble`` / ``Ensemble.from_runs`` (checkpoints of one or several experiments, averaged);
- ``checkpoints``: ``find_checkpoints``, ``parse_folds``;
- ``stream``: ``predict_images`` yields one ``Prediction`` (uint8 [C, H, W] at the submission size) per image;
- ``pipeline``: ``predict_submission`` (``kseg predict``); ``repredict_oof``: ``predict_oof`` (``kseg predict --oof``);
- ``probs_store``: ``ProbsWriter`` / ``read_probs`` (``--save-probs``); ``pseudo``: ``PseudoLabelWriter``.
"""
