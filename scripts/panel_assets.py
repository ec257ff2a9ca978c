"""Fetch the panel's front-end files from the npm registry at pinned versions.

Run by a developer when a version changes (`python3 scripts/panel_assets.py`), not by CI:
the files it copies into `panel/static/vendor/` are committed with `ASSETS.json`, which
records each one's package, version, licence and SHA-256, and a test checks the committed
files against it. `npm pack` only downloads the package tarball; nothing of it is run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "panel" / "static" / "vendor"

#: package, version, files inside the tarball (under package/) -> name in vendor/
PINNED: list[tuple[str, str, dict[str, str]]] = [
    ("htmx.org", "4.0.1", {
        "dist/htmx.min.js": "htmx.min.js",
        "LICENSE": "htmx.LICENSE.txt",
    }),
    ("vazirmatn", "33.0.3", {
        "fonts/webfonts/Vazirmatn-Regular.woff2": "Vazirmatn-Regular.woff2",
        "fonts/webfonts/Vazirmatn-Bold.woff2": "Vazirmatn-Bold.woff2",
        "OFL.txt": "Vazirmatn-OFL.txt",
    }),
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(package: str, version: str, files: dict[str, str], work: Path) -> dict:
    out = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(work)],
        check=True, capture_output=True, text=True, cwd=work,
    )
    info = json.loads(out.stdout)[0]
    tarball = work / info["filename"]
    with tarfile.open(tarball) as tar:
        meta = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
        if meta["version"] != version:
            raise SystemExit(f"{package}: asked for {version}, got {meta['version']}")
        entries = []
        for inside, name in files.items():
            member = tar.extractfile(f"package/{inside}")
            if member is None:
                raise SystemExit(f"{package}: {inside} is not a file")
            target = VENDOR / name
            target.write_bytes(member.read())
            entries.append({"file": name, "from": inside, "sha256": sha256(target),
                            "bytes": target.stat().st_size})
    return {"package": package, "version": version, "license": meta.get("license", ""),
            "integrity": info.get("integrity", ""), "files": entries}


def main() -> int:
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="panel-assets-") as tmp:
        manifest = [fetch(p, v, f, Path(tmp)) for p, v, f in PINNED]
    (VENDOR / "ASSETS.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for entry in manifest:
        print(f"{entry['package']} {entry['version']} ({entry['license']}): "
              f"{', '.join(f['file'] for f in entry['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
