"""The whole system on one machine: Mosquitto, the backend and the agent as processes,
the simulated terminal on a pseudo-terminal pair. Used by the demo and the end-to-end
tests; each process is started here and stopped here by its own pid.

The broker runs as in production, with the dynamic security plugin: the backend and
each agent log in with their own user name and password (docs/mqtt.md, "Broker
access"); `broker_access=False` gives an anonymous broker instead. Each terminal is
provisioned as an operator would: `loyalty-backend terminal add TID --merchant-id MID
--agent-config FILE` registers it in the backend's database (its one club, branch
main) and creates its broker login through the plugin's administrator; the agent logs
in with the login that file holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import dynsec
from backend.broker_access import BrokerAccess
from demo.mosquitto import Mosquitto, stop_process
from firmware_bridge.transports import FdTransport, PtyPair, open_pty
from protocols.response_codes import ResponseCode
from protocols.servicelog import mask
from terminal_sim.bank import BankHost
from terminal_sim.faults import FaultPlan
from terminal_sim.session import Session
from terminal_sim.terminal import TerminalConfig

TERMINAL_ID = "T0000001"
MERCHANT_ID = "M00000000000001"
MAC_KEY = "00112233445566778899aabbccddeeff"
BROKER_ADMIN = "admin"
BACKEND_USER = "loyalty-backend"


class StackError(RuntimeError):
    """A part of the system that would not start."""


@dataclass
class Stack:
    workdir: Path
    backend_config: str = ""
    terminal_id: str = TERMINAL_ID
    merchant_id: str = MERCHANT_ID
    mac_key: str = MAC_KEY
    python: str = sys.executable
    broker_access: bool = True
    broker: Mosquitto | None = None
    backend: subprocess.Popen | None = None
    agent: subprocess.Popen | None = None
    pty: PtyPair | None = None
    sessions: list[Session] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = self.workdir / "loyalty.sqlite"
        self.journal = self.workdir / "agent-journal.sqlite"
        self.outbox = self.workdir / "sms-outbox.jsonl"
        self.config_file = self.workdir / "backend.toml"
        text = self.backend_config or ""
        if "[sms]" not in text:
            # the demo's "لغو" reply is read within a second (15 s by default)
            text += (f'\n[sms]\nsender = "file"\nfile = "{self.outbox}"\n'
                     "receive_seconds = 1\n")
        self.config_file.write_text(text, encoding="utf-8")

    # --- processes ----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            return subprocess.Popen([self.python, "-m", *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        finally:
            log.close()

    def start_broker(self) -> None:
        folder = self.workdir / "broker"
        if not self.broker_access:
            self.broker = Mosquitto(folder).start()
            return
        folder.mkdir(parents=True, exist_ok=True)
        # kept beside the plugin's file, so a demo run again in the same folder logs in
        admin = self._secret(folder / "admin-password", dynsec.new_password)
        self.broker = Mosquitto(folder, dynsec=(BROKER_ADMIN, admin)).start()

    def _secret(self, path: Path, make: Any) -> str:
        if path.exists():
            return path.read_text().strip()
        value = make()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value

    def login(self, username: str) -> Path | None:
        """A new password for `username` (the backend's), made with the broker's
        administrator; the file that holds it (mode 600)."""
        if not self.broker_access:
            return None
        assert self.broker is not None and self.broker.dynsec is not None
        with BrokerAccess(self.broker.address, *self.broker.dynsec) as access:
            try:
                if username == BACKEND_USER:
                    password = access.add_backend(username)
                else:
                    password = access.add_terminal(username)
            except dynsec.DynsecError:  # made by an earlier run in this folder
                password = access.set_password(username)
        path = self.workdir / f"broker-password-{username}"
        path.unlink(missing_ok=True)
        self._secret(path, lambda: password)
        return path

    def _backend_command(self, *args: str) -> None:
        """A `loyalty-backend` operator command on the stack's database; StackError if it fails."""
        done = subprocess.run(
            [self.python, "-m", "backend", *args, "--db", str(self.db),
             "--config", str(self.config_file)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        with open(self.workdir / "provisioning.log", "a", encoding="utf-8") as log:
            # the MAC key `terminal add` shows once is for the bank terminal, not for a file
            log.write(mask(f"$ loyalty-backend {' '.join(args)}\n{done.stdout}{done.stderr}"))
        if done.returncode != 0:
            raise StackError(f"loyalty-backend {args[0]} {args[1]} failed: {done.stderr.strip()}")

    def register(self, terminal_id: str) -> Path | None:
        """Register `terminal_id` with `terminal add` (once per work folder); its agent
        config (with its broker login) when the broker has access control."""
        if not self.db.exists():
            self._backend_command("migrate")
        agent_config = self.workdir / f"agent-{terminal_id}.toml"
        if (self.workdir / f"registered-{terminal_id}").exists():
            return agent_config if self.broker_access else None
        args = ["terminal", "add", terminal_id, "--merchant-id", self.merchant_id]
        if self.broker_access:
            assert self.broker is not None and self.broker.dynsec is not None
            agent_config.unlink(missing_ok=True)
            admin_password = self.workdir / "broker" / "admin-password"
            args += ["--agent-config", str(agent_config), "--broker", self.broker.address,
                     "--broker-admin", self.broker.dynsec[0],
                     "--broker-admin-password-file", str(admin_password)]  # fmt: skip
        self._backend_command(*args)
        (self.workdir / f"registered-{terminal_id}").touch()
        return agent_config if self.broker_access else None

    def start_backend(self) -> None:
        assert self.broker is not None
        if not self.db.exists():
            self._backend_command("migrate")
        self.register(self.terminal_id)
        login = []
        password_file = self.login(BACKEND_USER)
        if password_file is not None:  # mode 600, as the backend demands
            login = ["--broker-username", BACKEND_USER,
                     "--broker-password-file", str(password_file)]
        self.backend = self._spawn("backend", [
            "backend", "run", "--broker", self.broker.address, "--db", str(self.db),
            "--config", str(self.config_file), *login])

    def stop_backend(self) -> None:
        stop_process(self.backend)
        self.backend = None

    def start_agent(self) -> None:
        """The agent on the pty's slave end, as if the terminal's serial cable."""
        if self.pty is None:
            self.pty = open_pty()
        self.agent = self.spawn_agent("agent", ["--serial", self.pty.path],
                                      self.terminal_id, self.journal)

    def spawn_agent(self, name: str, line: list[str], terminal_id: str,
                    journal: Path) -> subprocess.Popen:
        """Another agent process (e.g. `--listen 127.0.0.1:PORT`); the caller stops it."""
        assert self.broker is not None
        agent_config = self.register(terminal_id)
        login = []
        if agent_config is not None:
            # the login `terminal add` made; the rest of its file is for a real terminal's
            # machine (serial port, journal, a fresh MAC key) and set here on the command line
            written = tomllib.loads(agent_config.read_text(encoding="utf-8"))
            password_file = self.workdir / f"broker-password-{terminal_id}"
            password_file.unlink(missing_ok=True)
            self._secret(password_file, lambda: written["broker_password"])
            login = ["--broker-username", written["broker_username"],
                     "--broker-password-file", str(password_file)]
        return self._spawn(name, [
            "agent", "run", *line, "--broker", self.broker.address,
            "--terminal-id", terminal_id, "--merchant-id", self.merchant_id,
            "--mac-key", self.mac_key, "--journal", str(journal), *login])

    def stop_agent(self) -> None:
        stop_process(self.agent)
        self.agent = None

    def start(self) -> Stack:
        try:
            self.start_broker()
            self.start_backend()
            self.start_agent()
        except Exception:
            self.stop()
            raise
        return self

    def check_alive(self) -> None:
        for name, proc in (("backend", self.backend), ("agent", self.agent)):
            if proc is not None and proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-1500:]
                raise StackError(f"the {name} exited with {proc.returncode}:\n{tail}")

    # --- the terminal ---------------------------------------------------------------------
    def config(self, **overrides: Any) -> TerminalConfig:
        return TerminalConfig(terminal_id=self.terminal_id, merchant_id=self.merchant_id,
                              mac_key=bytes.fromhex(self.mac_key), **overrides)

    def session(self, faults: FaultPlan | None = None, bank: BankHost | None = None,
                config: TerminalConfig | None = None, **kwargs: Any) -> Session:
        """A simulated terminal on the pty's master end (one at a time)."""
        assert self.pty is not None
        s = Session(FdTransport(self.pty.master), config or self.config(),
                    faults or FaultPlan(), bank or BankHost(), **kwargs)
        self.sessions.append(s)
        return s.start()

    def wait_ready(self, session: Session, timeout: float = 30.0,
                   backend: bool = True) -> None:
        """Sign on until the agent answers (and says the backend is online)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            ex = session.terminal.sign_on()
            r = ex.response
            if (r is not None and r.code == ResponseCode.APPROVED
                    and (not backend or r.status == "ON")):
                return
            if time.monotonic() > deadline:
                raise StackError(f"agent/backend not ready after {timeout} s: "
                                 f"{r or ex.note}; see {self.workdir}")
            time.sleep(0.3)

    def wait_forwarded(self, session: Session, timeout: float = 30.0) -> int:
        """Echo until the agent has no advice left to forward; returns QD."""
        deadline = time.monotonic() + timeout
        queued = -1
        while time.monotonic() < deadline:
            r = session.terminal.echo().response
            if r is not None and r.queued is not None:
                queued = r.queued
                if queued == 0 and r.status == "ON":
                    return 0
            time.sleep(0.3)
        return queued

    def stop(self) -> None:
        for s in self.sessions:
            try:
                s.stop()
            except Exception:
                pass
        self.sessions.clear()
        self.stop_agent()
        self.stop_backend()
        if self.broker is not None:
            self.broker.stop()
        if self.pty is not None:
            self.pty.close()
            self.pty = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
