"""The application code: turn one bundle into one output table.

Small, fast and dependency-free on purpose: it stands for the real processing, which the
runtime neither knows nor cares about. A bundle is a text file of records, one per line;
a path that does not exist is read as a synthetic bundle derived from its name, so demos
and tests need no data set. The output keeps the seed's file name (`bundle.parquet`) but
is a small CSV table: a real application would write Parquet here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["process_bundle", "synthetic_records"]


def synthetic_records(bundle_path: str, count: int | None = None) -> list[str]:
    """Deterministic records for a bundle that is only a name (10-59 of them)."""
    digest = hashlib.sha256(bundle_path.encode()).digest()
    n = count if count is not None else 10 + digest[0] % 50
    return [f"{bundle_path}:{i}:{digest[i % len(digest)]}" for i in range(n)]


def process_bundle(bundle_path: str, out: str | os.PathLike[str]) -> int:
    """Write `out` (one `index,length,checksum` row per record) and return the row count."""
    source = Path(bundle_path)
    if source.is_file():
        records = source.read_text(encoding="utf-8").splitlines()
    else:
        records = synthetic_records(bundle_path)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write("index,length,checksum\n")
        for i, record in enumerate(records):
            checksum = hashlib.sha256(record.encode()).hexdigest()[:16]
            f.write(f"{i},{len(record)},{checksum}\n")
    os.replace(tmp, target)
    return len(records)
