"""The vendored front-end files and their manifest (written by scripts/panel_assets.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"
MANIFEST = VENDOR / "ASSETS.json"


@dataclass(frozen=True, slots=True)
class AssetFile:
    file: str
    source: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Asset:
    package: str
    version: str
    license: str
    files: tuple[AssetFile, ...]


def load_manifest(path: Path = MANIFEST) -> tuple[Asset, ...]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        Asset(package=e["package"], version=e["version"], license=e["license"],
              files=tuple(AssetFile(file=f["file"], source=f["from"], sha256=f["sha256"],
                                    size=f["bytes"]) for f in e["files"]))
        for e in entries)


def mismatches(assets: tuple[Asset, ...], vendor: Path = VENDOR) -> list[str]:
    """Every vendored file whose bytes differ from the manifest, or that is missing/extra."""
    problems = []
    listed = set()
    for asset in assets:
        for f in asset.files:
            listed.add(f.file)
            path = vendor / f.file
            if not path.is_file():
                problems.append(f"{f.file}: missing")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != f.sha256:
                problems.append(f"{f.file}: SHA-256 differs from the manifest")
    for path in vendor.iterdir():
        if path.name != MANIFEST.name and path.name not in listed:
            problems.append(f"{path.name}: not in the manifest")
    return problems
