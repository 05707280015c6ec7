"""The de-identification stage.

Presidio imports its transformers NLP engine, and transformers, installed for the shard stage's tokenizer files
but without PyTorch (which nothing here uses), prints "PyTorch was not found" at import into every log that
loads the engine.  That line is transformers' advisory warning, switched off here, before any Presidio import
(every one is in this package), unless the environment says otherwise.
"""

import os

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
