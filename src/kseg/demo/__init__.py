"""Demo fixtures: small deterministic competitions that ``kseg demo`` and the tests write and run.

- ``registry``: ``MINIATURES`` (name -> writer, shipped config, fast overrides) and ``write_miniature``;
- ``synthetic``: the synthetic Severstal-like demo competition (``make_demo``, ``make_sample``);
- ``severstal``, ``carvana``, ``clouds``, ``tgs_salt``, ``isbi2012``: miniatures of real competitions' layouts;
- ``streets``, ``airplanes``: miniatures of our own multiclass and binary layouts;
- ``common``: the writers' file helpers (ids, images, GIF masks, csvs, noise).
"""
