"""Where the real public screens of ../shared/data live (beside the checkout, in CI too)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCREENFORMULA_DATA", ROOT.parent / "shared" / "data"))
