"""Content-hash ids: the same inputs always give the same id, so stages are incremental."""

import hashlib
import json
from typing import Any


def content_id(*parts: Any, length: int = 16) -> str:
    """A stable hex id of JSON-serialisable parts (dict keys sorted)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]
