"""Offline Kaggle kernels: build (dataset + script), rehearse locally with the network cut, push and poll.

``kseg.kernel.build.build_kernel`` writes ``kernels/<exp>/{dataset,kernel}/``;
``kseg.kernel.rehearse.rehearse`` runs that kernel as Kaggle would, offline;
``kseg.kernel.push`` drives the official ``kaggle`` CLI (``kseg.kernel.kaggle_cli``) and records ``push.json``.
"""
