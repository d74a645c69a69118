"""Submissions.

- ``write``: the streaming submission writer, rows in sample-submission order;
- ``validate``: ``validate_submission``, the checks Kaggle makes.
"""
