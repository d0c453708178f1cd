"""``python -m workbench.provenance``: run the collector (this is what start_collector spawns)."""

import sys

# jsonschema checks 'iri' formats with rfc3987_syntax, which builds a grammar at import (about a
# second of CPU); the record schemas use no format keyword, so the collector does without it.
sys.modules.setdefault("rfc3987_syntax", None)

from workbench.provenance.service import main  # noqa: E402

sys.exit(main())
