"""`loyalty-agent health --config FILE`: exit 0 when healthy, 1 and the reason otherwise.

Healthy means, in this order (the first failure is the reason printed):
1. the config file gives valid settings (as `run` would accept them);
2. the journal file exists, is readable, and is at most --max-journal-mb;
3. the broker accepts a connection with the agent's credentials within --timeout;
4. a backend's retained presence on the broker says online;
5. when the config has `metrics`: the running agent answers there, its advices waiting
   are at most --max-waiting and the oldest is at most --max-age seconds old (a growing
   backlog means the backend is not taking them).
It never writes the journal nor publishes anything: the running agent's presence on the
broker stays its own.
"""

from __future__ import annotations

import argparse
import os
import urllib.request
import uuid

from agent.config import AgentConfig, ConfigError, build, load_toml
from protocols.mqtt_client import probe_broker

HEALTHY = 0
UNHEALTHY = 1


class Unhealthy(Exception):
    """The reason an agent is not healthy."""


def check(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args.config)
        _journal(cfg, args.max_journal_mb)
        _broker(cfg, args.timeout)
        if cfg.metrics_port:  # 0 (any free port) cannot be found from outside
            _backlog(cfg, args.timeout, args.max_waiting, args.max_age)
    except Unhealthy as exc:
        print(f"loyalty-agent: unhealthy: {exc}")
        return UNHEALTHY
    print(f"loyalty-agent: healthy: terminal {cfg.terminal_id}")
    return HEALTHY


def _config(path: str) -> AgentConfig:
    try:
        settings = load_toml(path)
        if not settings.get("journal") or not os.path.exists(settings["journal"]):
            raise Unhealthy(f"journal: {settings.get('journal')} does not exist")
        return build(settings)
    except ConfigError as exc:
        raise Unhealthy(f"config: {exc}") from None


def _journal(cfg: AgentConfig, max_mb: float) -> None:
    try:
        with open(cfg.journal, "rb") as f:
            f.read(4096)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise Unhealthy(f"journal: {cfg.journal} cannot be read: {exc.strerror}") from None
    if size > max_mb * 1e6:
        raise Unhealthy(f"journal: {cfg.journal} is {size / 1e6:.1f} MB (> {max_mb} MB)")


def _broker(cfg: AgentConfig, timeout: float) -> None:
    reason = probe_broker(
        cfg.broker_host, cfg.broker_port,
        client_id=f"loyalty-health-{cfg.terminal_id}-{uuid.uuid4().hex[:8]}",
        username=cfg.broker_username, password=cfg.broker_password,
        ca_file=cfg.broker_ca_file, timeout=timeout)
    if reason is not None:
        raise Unhealthy(reason)


def _backlog(cfg: AgentConfig, timeout: float, max_waiting: int, max_age: float) -> None:
    host = f"[{cfg.metrics_host}]" if ":" in str(cfg.metrics_host) else cfg.metrics_host
    url = f"http://{host}:{cfg.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            text = r.read().decode()
    except OSError as exc:
        raise Unhealthy(f"agent: its metrics at {url} do not answer: {exc}") from None
    values = _samples(text)
    waiting = values.get("loyalty_agent_advices_waiting", 0.0)
    age = values.get("loyalty_agent_oldest_advice_age_seconds", 0.0)
    if waiting > max_waiting:
        raise Unhealthy(f"journal: {waiting:.0f} advices waiting (> {max_waiting})")
    if age > max_age:
        raise Unhealthy(f"journal: the oldest advice has waited {age:.0f} s (> {max_age:.0f} s)")


def _samples(text: str) -> dict[str, float]:
    """Metric name -> value of a Prometheus text exposition (one terminal: no label clash)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        out[name_labels.partition("{")[0]] = float(value)
    return out
