"""Every unit in deploy/systemd passes `systemd-analyze verify`, offline (no running systemd).

verify checks that each ExecStart= binary exists: the units name /usr/local/bin/loyalty-*
(where docs/operations.md installs them), so the test verifies copies pointing at this
machine's installed console scripts. `loyalty-panel` is not written yet (the panel work
adds it): its copy points at a stand-in, and the test says so by name in PLANNED.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
INSTALLED = "/usr/local/bin/"
#: Commands a unit may name before their code exists.
PLANNED = {"loyalty-panel"}
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze (Debian's systemd) "
                                "missing: scripts/setup.sh installs it")


def _console_script(name: str) -> str | None:
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        path = Path(folder) / name
        if path.is_file():
            return str(path)
    return shutil.which(name)


def _copies(tmp_path: Path) -> list[Path]:
    """The units with their binaries on this machine; a template as instance T0000001."""
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    out = []
    for unit in sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.timer")):
        text = unit.read_text(encoding="utf-8")
        for name in set(re.findall(re.escape(INSTALLED) + r"([\w-]+)", text)):
            found = _console_script(name)
            if found is None:
                assert name in PLANNED, f"{unit.name}: {name} is not an installed command"
                found = str(stand_in / name)
                Path(found).write_text("#!/bin/sh\nexit 0\n")
                Path(found).chmod(0o755)
            text = text.replace(INSTALLED + name, found)
        target = tmp_path / unit.name.replace("@.", "@T0000001.")
        target.write_text(text, encoding="utf-8")
        out.append(target)
    return out


def test_every_unit_verifies(tmp_path: Path) -> None:
    units = _copies(tmp_path)
    names = {u.name for u in units}
    assert {"loyalty-backend.service", "loyalty-panel.service", "loyalty-agent@T0000001.service",
            "loyalty-backup.service", "loyalty-backup.timer"} <= names
    done = subprocess.run([ANALYZE, "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=60)
    # verify exits 0 on an unknown key or a bad value: any word about our units is a failure
    ours = [line for line in (done.stdout + done.stderr).splitlines()
            if any(n in line for n in names)]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr


def test_a_misspelt_option_is_caught(tmp_path: Path) -> None:
    """The check above can fail: verify names a unit with an unknown key."""
    units = _copies(tmp_path)
    backend = next(u for u in units if u.name == "loyalty-backend.service")
    backend.write_text(backend.read_text().replace("ProtectSystem=", "ProtectSystm="))
    done = subprocess.run([ANALYZE, "verify", "--man=no", str(backend)],
                          capture_output=True, text=True, timeout=60)
    assert "ProtectSystm" in done.stderr


def test_units_carry_what_the_issue_asks() -> None:
    agent = (UNITS / "loyalty-agent@.service").read_text()
    assert "ExecStart=/usr/local/bin/loyalty-agent run --config /etc/loyalty-agent/%i.toml" in agent
    assert "SupplementaryGroups=dialout" in agent and "MALLOC_ARENA_MAX=1" in agent
    panel = (UNITS / "loyalty-panel.service").read_text()
    assert "loyalty-panel run --db " in panel and "--listen 127.0.0.1:8080" in panel
    backup = (UNITS / "loyalty-backup.service").read_text()
    assert re.search(r"loyalty-backend backup --db \S+ --to \S+ --keep \d+", backup)
    assert "OnCalendar=" in (UNITS / "loyalty-backup.timer").read_text()
    for unit in UNITS.glob("*.service"):
        text = unit.read_text()
        for option in ("User=", "StateDirectory=", "NoNewPrivileges=yes",
                       "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                       "RestrictAddressFamilies="):
            assert option in text, f"{unit.name}: {option}"
        if "Type=oneshot" not in text:
            assert "Restart=on-failure" in text, unit.name


def test_hardening_exposure_stays_low(tmp_path: Path) -> None:
    """`systemd-analyze security --offline`: every service at most 2.0 (OK) of 10."""
    for unit in _copies(tmp_path):
        if unit.suffix != ".service":
            continue
        done = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
                              capture_output=True, text=True, timeout=60)
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
        assert level, done.stdout[-2000:] + done.stderr
        assert float(level.group(1)) <= 2.0, (unit.name, done.stdout[-3000:])
