"""Offline Kaggle kernels: build (dataset + script), rehearse locally with the network cut, push and poll.

- ``build``: ``build_kernel`` writes ``kernels/<exp>/{dataset,kernel}/``; ``wheels``: the wheels it ships;
- ``script`` / ``script_template``: the kernel script; ``metadata``: the kaggle CLI's metadata files;
- ``rehearse``: ``rehearse`` runs that kernel as Kaggle would, offline (``offline``: cutting the network);
- ``push``: drives the official ``kaggle`` CLI (``kaggle_cli``) and records ``push.json``; ``slugs``: names.
"""
