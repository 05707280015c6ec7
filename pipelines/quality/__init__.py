"""The quality layer: Great Expectations validation of every zone, and the curate steps between the
de-identified and curated zones (residual-PHI gate, filters, deduplication, benchmark decontamination).

GX logs at INFO while it is being imported and has no analytics opt-out in code that runs before import, so
both are set here, before any submodule imports it.
"""

import logging
import os

os.environ["GX_ANALYTICS_ENABLED"] = "False"
logging.getLogger("great_expectations").setLevel(logging.WARNING)
