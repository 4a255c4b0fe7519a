"""The golden fixtures are the files the original code produced (../shared/parity, copied here): every file is
present and unchanged, as its MANIFEST.sha256 records."""

import hashlib
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def test_every_golden_file_matches_its_manifest_checksum():
    rows = [line.split(maxsplit=1) for line in (GOLDEN / "MANIFEST.sha256").read_text().splitlines() if line]
    assert len(rows) > 20
    for digest, name in rows:
        path = GOLDEN / name.strip().lstrip("*")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
