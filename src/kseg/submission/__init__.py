"""Submissions: ``write`` (streaming writer in sample order) and ``validate`` (Kaggle-style checks).

Nothing is imported here: use ``kseg.submission.write`` / ``kseg.submission.validate`` directly.
"""
