"""CLI stages of ``kseg``.

- ``stages``: the stage table, the parser and ``dispatch`` / ``run_stage``;
- ``args``: argument helpers the stages share (``add_config_arguments``, ``split_runs``);
- one module per stage (``folds``, ``train``, ``tune``, ``predict``, ``validate``, ``kernel``, ``demo``), each
  exposing ``add_arguments(parser)`` and ``run(args) -> int``.
"""
