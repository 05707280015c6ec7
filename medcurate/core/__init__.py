"""The ground floor: the document record, zones, the corpus spec, keys, storage and the run context.

Everything else (the stages in ``pipelines/``, ``governance/``, the runner and the CLI) stands on these modules;
they import nothing above them (``tests/test_import_layers.py`` checks it).
"""
