"""Fold training: ``train_fold`` / ``train_folds`` write ``runs/<exp>/fold<K>/`` (see the README, "Training artefacts")."""

from kseg.train.fit import FoldResult, train_fold, train_folds

__all__ = ["FoldResult", "train_fold", "train_folds"]
