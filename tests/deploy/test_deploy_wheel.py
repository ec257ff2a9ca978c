"""A wheel builds from the sources and installs into a fresh venv with every command working.

Offline: `python -m build --no-isolation` with the setuptools and wheel installed here,
and the venv sees this interpreter's site-packages only for the dependencies
(`--system-site-packages`); the project itself comes from the wheel alone (checked: the
commands run from a folder outside the checkout, without PYTHONPATH, and import it from
the venv).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("loyalty-backend", "loyalty-agent", "loyalty-sim", "loyalty-demo")
#: What a source distribution holds; copied so the build leaves nothing in the checkout.
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "protocols", "firmware_bridge", "agent",
           "backend", "terminal_sim", "demo")

pytest.importorskip("build")
pytest.importorskip("wheel")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env


def test_wheel_builds_installs_and_every_command_answers(tmp_path: Path) -> None:
    src, dist = tmp_path / "src", tmp_path / "dist"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(REPO / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
         str(src)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = dist.glob("loyalty_pos-*-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for must in ("agent/cli.py", "backend/cli.py", "protocols/servicelog.py",
                 "terminal_sim/scenarios/", "demo/main.py"):
        assert any(n.startswith(must) for n in names), must
    assert not any(n.startswith("tests/") for n in names)
    venv = tmp_path / "venv"
    # without a pip of its own (ensurepip takes ~10 s): this pip installs into it (--python)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python",
           str(venv / "bin" / "python")]
    installed = subprocess.run(
        [*pip, "install", "--no-index", "--no-deps", "--force-reinstall", str(wheel)],
        capture_output=True, text=True, timeout=240, env=_clean_env(), cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    # every requirement of the wheel's metadata is there for the venv (pip check would
    # also judge unrelated packages of this interpreter)
    deps = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from importlib import metadata; import re\n"
         "for r in metadata.requires('loyalty-pos'):\n"
         "    if 'extra ==' not in r:\n"
         "        print(re.match(r'[A-Za-z0-9_.-]+', r).group(0), "
         "metadata.version(re.match(r'[A-Za-z0-9_.-]+', r).group(0)))"],
        capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=tmp_path)
    assert deps.returncode == 0 and "prometheus" in deps.stdout.lower(), deps.stderr
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import agent, protocols.version as v; print(agent.__file__); print(v.version())"],
        capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=tmp_path)
    where, number = version.stdout.split()
    assert where.startswith(str(venv)), where  # the wheel's copy, not a checkout's
    for command in COMMANDS:
        done = subprocess.run([str(venv / "bin" / command), "--version"], capture_output=True,
                              text=True, timeout=60, env=_clean_env(), cwd=tmp_path)
        assert done.returncode == 0 and done.stdout.strip() == f"{command} {number}", (
            command, done.stdout, done.stderr)
    helped = subprocess.run([str(venv / "bin" / "loyalty-agent"), "health", "--help"],
                            capture_output=True, text=True, timeout=60, env=_clean_env(),
                            cwd=tmp_path)
    assert helped.returncode == 0 and "--config" in helped.stdout
