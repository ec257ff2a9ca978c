"""Start and stop a private Mosquitto broker on a free loopback port.

Used by the demo and by the tests: the broker listens on 127.0.0.1 only, with
`set_tcp_nodelay true` (Nagle otherwise adds tens of milliseconds to every
request/response), and is stopped by its own process id. Anonymous by default; with
`users` (+ `acl`) it uses a password file, with `dynsec` (the administrator's name and
password) Mosquitto's dynamic security plugin, whose logins backend/broker_access.py
then creates while the broker runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend import dynsec as dynsec_file

INSTALL_HINT = (
    "Mosquitto is not installed. On Debian or Ubuntu: sudo apt-get install -y mosquitto "
    "(or run scripts/setup.sh, which does it)."
)


class BrokerError(RuntimeError):
    pass


def find_mosquitto() -> str:
    """The mosquitto binary, on PATH or in /usr/sbin (where Debian puts it)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError(INSTALL_HINT)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(
    proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> int | None:
    """`sig` (SIGTERM), then SIGKILL after `timeout`, by the process's own pid; its exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


@dataclass
class Mosquitto:
    """One broker process. `users` (name -> password) and `acl` (file text) turn on auth;
    `dynsec` (admin user, password) the dynamic security plugin, its state in
    `dynsec_file` (kept across restarts, like a production broker's)."""

    workdir: Path
    port: int = 0
    users: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    tls: tuple[Path, Path, Path] | None = None  # (ca, cert, key) for a TLS listener
    tls_port: int = 0
    dynsec: tuple[str, str] | None = None
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if self.tls and not self.tls_port:
            self.tls_port = free_port()

    @property
    def dynsec_file(self) -> Path:
        return self.workdir / "dynamic-security.json"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            "per_listener_settings false",
            "set_tcp_nodelay true",
            "persistence false",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"listener {self.port} 127.0.0.1",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to user `mosquitto`, who cannot read our
            # password and ACL files in a private (0700) folder: stay the current user.
            lines.append("user root")
        if self.tls:
            ca, cert, key = self.tls
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {ca}",
                f"certfile {cert}",
                f"keyfile {key}",
            ]
        if self.dynsec and self.users:
            raise BrokerError("give users (a password file) or dynsec, not both")
        if self.dynsec:
            if not self.dynsec_file.exists():
                text = json.dumps(dynsec_file.initial_config(*self.dynsec), indent=1)
                fd = os.open(self.dynsec_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
            lines += [
                "allow_anonymous false",
                f"plugin {find_dynsec_plugin()}",
                f"plugin_opt_config_file {self.dynsec_file}",
            ]
        elif self.users:
            pwfile = self.workdir / "passwords"
            pwfile.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            os.chmod(pwfile, 0o600)
            subprocess.run(
                [find_mosquitto_passwd(), "-U", str(pwfile)],
                check=True,
                capture_output=True,
            )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            aclfile = self.workdir / "acl"
            aclfile.write_text(self.acl)
            lines.append(f"acl_file {aclfile}")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> Mosquitto:
        if self.proc and self.proc.poll() is None:
            return self
        conf = self._write_config()
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "mosquitto.stderr", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            wait_for_port("127.0.0.1", self.port)
            if self.tls:
                wait_for_port("127.0.0.1", self.tls_port)
        except BrokerError:
            self.stop()
            log = (self.workdir / "mosquitto.stderr").read_text(errors="replace")
            raise BrokerError(f"mosquitto did not start: {log[-500:]}") from None
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop by our own process id: SIGTERM, then SIGKILL."""
        proc, self.proc = self.proc, None
        stop_process(proc, timeout=timeout)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
_PLUGIN_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
                "/usr/local/lib")


def find_dynsec_plugin() -> str:
    """The dynamic security plugin; Debian's mosquitto package ships it in the lib dir."""
    for folder in _PLUGIN_DIRS:
        path = Path(folder) / DYNSEC_PLUGIN
        if path.is_file():
            return str(path)
    raise BrokerError(f"{DYNSEC_PLUGIN} not found in {', '.join(_PLUGIN_DIRS)}. {INSTALL_HINT}")


def find_mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path="/usr/bin:/usr/sbin"
    )
    if not found:
        raise BrokerError(INSTALL_HINT)
    return found
