"""The backend's TOML configuration (config/backend.toml documents every setting).

Strict on purpose: an unknown key or a wrong type is an error naming the key, so a typo
in a shop owner's file is reported instead of silently running the defaults.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

from backend.program import Offer, Program, Tier, parse_hours, parse_weekdays
from backend.sms.senders import make_sender
from protocols.address import parse_host_port
from protocols.numbers import is_number


class ConfigError(ValueError):
    """A configuration file or value the backend cannot use; the message names the key."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    broker: str | None = None
    username: str | None = None
    password: str | None = None
    #: a file holding the password (not world-readable); read at start and on SIGHUP
    password_file: str | None = None
    ca_file: str | None = None
    instance: str | None = None
    keepalive: int = 30
    #: the dynamic security plugin's administrator, for `terminal add|disable|enable`
    #: (its password in a file of its own, mode 600, never in this file)
    admin_username: str | None = None
    admin_password_file: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    batch_max: int = 200  # requests committed together (group commit)
    sweep_seconds: float = 5.0  # how often expired holds and credit are swept
    # stored responses kept this long (longer than the agent's 7-day reversal window)
    requests_retention_days: int = 30
    checkpoint_seconds: float = 1.0  # WAL checkpoints, off the request path


@dataclass(frozen=True, slots=True)
class Settings:
    program: Program = field(default_factory=Program)
    offers: tuple[Offer, ...] = ()
    shop_name: str = "فروشگاه"
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    sms: Mapping[str, Any] = field(default_factory=dict)
    #: [log] level: what `run` logs at when --log-level is not given; SIGHUP re-reads it.
    log_level: str | None = None
    #: [log] format ("text" or "json") and file, when --log-format/--log-file are not given
    log_format: str | None = None
    log_file: str | None = None
    #: [metrics] listen: HOST:PORT of the Prometheus endpoint when --metrics is not given
    metrics: str | None = None


_TOP = {"shop", "program", "otp", "transfer", "offers", "mqtt", "service", "sms", "log", "metrics"}


def _table(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return dict(value)


def _take(
    table: dict[str, Any], where: str, key: str, kind: type | tuple[type, ...], default: Any
) -> Any:
    if key not in table:
        return default
    value = table.pop(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{where}.{key}: expected {kinds[0].__name__}, got {value!r}")
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}.{key}: expected {kinds[0].__name__}, got {value!r}")
    if is_number(value) and value < 0:
        raise ConfigError(f"{where}.{key}: must not be negative")
    return value


def _no_more(table: dict[str, Any], where: str) -> None:
    if table:
        raise ConfigError(f"{where}: unknown setting {next(iter(table))!r}")


def _date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def parse_offer(raw: Mapping[str, Any], where: str) -> Offer:
    t = dict(raw)
    try:
        weekdays = _take(t, where, "weekdays", (list, str), [])
        hours = _take(t, where, "hours", str, None)
        start = _take(t, where, "start", (str, date), None)
        until = t.pop("until", None)
        if until is None:
            raise ConfigError(f"{where}.until: every offer needs an expiry date")
        offer = Offer(
            name=_take(t, where, "name", str, ""),
            percent=float(_take(t, where, "percent", (int, float), 0)),
            amount=_take(t, where, "amount", int, 0),
            start=_date(start, f"{where}.start") if start is not None else None,
            until=_date(until, f"{where}.until"),
            weekdays=parse_weekdays(weekdays),
            hours=parse_hours(hours) if hours else None,
            min_purchase=_take(t, where, "min_purchase", int, 0),
            target=_take(t, where, "target", str, "everyone"),
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    _no_more(t, where)
    return offer


#: the tables of a club's program (`loyalty-backend program import|export`)
PROGRAM_TABLES = ("program", "otp", "transfer")


def parse_program(doc: Mapping[str, Any]) -> Program:
    """A club's program: the [program] (with its tiers), [otp] and [transfer] tables of
    config/backend.toml, and nothing else."""
    for name in doc:
        if name not in PROGRAM_TABLES:
            raise ConfigError(
                f"unknown table [{name}] in a program (a program holds [program], "
                "[[program.tiers]], [otp] and [transfer])"
            )
    return _program(doc)


def _program(doc: Mapping[str, Any]) -> Program:
    prog = _table(doc, "program")
    defaults = Program()
    kwargs: dict[str, Any] = {}
    for key, kind in (
        ("tier_window_days", int),
        ("max_redeem_percent", (int, float)),
        ("hold_seconds", int),
        ("credit_days", int),
        ("welcome_credit", int),
        ("referral_bonus", int),
        ("gift_max_percent", (int, float)),
        ("gift_earn", bool),
        ("link_days", int),
        ("survey_percent", (int, float)),
    ):
        kwargs[key] = _take(prog, "program", key, kind, getattr(defaults, key))
    if not 0 < kwargs["gift_max_percent"] <= 100:
        raise ConfigError("program.gift_max_percent: must be more than 0 and at most 100")
    if not 0 <= kwargs["survey_percent"] <= 100:
        raise ConfigError("program.survey_percent: must be 0..100")
    if kwargs["max_redeem_percent"] > 100:
        raise ConfigError("program.max_redeem_percent: must be at most 100")
    raw_tiers = _take(prog, "program", "tiers", list, None)
    if raw_tiers is not None:
        tiers = []
        for i, raw in enumerate(raw_tiers):
            where = f"program.tiers[{i}]"
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}: must be a table")
            t = dict(raw)
            name = _take(t, where, "name", str, "")
            if not name:
                raise ConfigError(f"{where}.name: a tier needs a name")
            tiers.append(
                Tier(
                    name=name,
                    min_spend=_take(t, where, "min_spend", int, 0),
                    percent=float(_take(t, where, "cashback_percent", (int, float), 0)),
                )
            )
            _no_more(t, where)
        kwargs["tiers"] = tuple(tiers)
    _no_more(prog, "program")

    otp = _table(doc, "otp")
    for key, attr in (
        ("threshold", "otp_threshold"),
        ("digits", "otp_digits"),
        ("ttl_seconds", "otp_seconds"),
        ("tries", "otp_tries"),
    ):
        kwargs[attr] = _take(otp, "otp", key, int, getattr(defaults, attr))
    _no_more(otp, "otp")
    if not 4 <= kwargs["otp_digits"] <= 10:
        raise ConfigError("otp.digits: must be 4..10")
    if kwargs["otp_tries"] < 1:
        raise ConfigError("otp.tries: must be at least 1")
    transfer = _table(doc, "transfer")
    for key, attr, kind in (
        ("enabled", "transfer_enabled", bool),
        ("max", "transfer_max", int),
        ("day_max", "transfer_day_max", int),
        ("min", "transfer_min", int),
    ):
        kwargs[attr] = _take(transfer, "transfer", key, kind, getattr(defaults, attr))
    _no_more(transfer, "transfer")
    if not 1 <= kwargs["transfer_min"] <= kwargs["transfer_max"] <= kwargs["transfer_day_max"]:
        raise ConfigError("transfer: need 1 <= min <= max <= day_max (rials)")
    try:
        return Program(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def program_toml(program: Program) -> str:
    """A program as the TOML `parse_program` reads (what `program export` writes when a
    club has no stored version: the configuration's, every value spelled out)."""
    p = program
    lines = [
        "[program]",
        f"tier_window_days = {p.tier_window_days}",
        f"max_redeem_percent = {_num(p.max_redeem_percent)}",
        f"hold_seconds = {p.hold_seconds}",
        f"credit_days = {p.credit_days}",
        f"welcome_credit = {p.welcome_credit}",
        f"referral_bonus = {p.referral_bonus}",
        f"gift_max_percent = {_num(p.gift_max_percent)}",
        f"gift_earn = {'true' if p.gift_earn else 'false'}",
        f"link_days = {p.link_days}",
        f"survey_percent = {_num(p.survey_percent)}",
    ]
    for t in p.tiers:
        lines += [
            "",
            "[[program.tiers]]",
            f"name = {_toml_string(t.name)}",
            f"min_spend = {t.min_spend}",
            f"cashback_percent = {_num(t.percent)}",
        ]
    lines += [
        "",
        "[otp]",
        f"threshold = {p.otp_threshold}",
        f"digits = {p.otp_digits}",
        f"ttl_seconds = {p.otp_seconds}",
        f"tries = {p.otp_tries}",
        "",
        "[transfer]",
        f"enabled = {'true' if p.transfer_enabled else 'false'}",
        f"max = {p.transfer_max}",
        f"day_max = {p.transfer_day_max}",
        f"min = {p.transfer_min}",
    ]
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _toml_string(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in out) + '"'


def parse(doc: Mapping[str, Any]) -> Settings:
    for name in doc:
        if name not in _TOP:
            raise ConfigError(f"unknown table [{name}] (known: {', '.join(sorted(_TOP))})")
    shop = _table(doc, "shop")
    shop_name = _take(shop, "shop", "name", str, Settings().shop_name)
    _no_more(shop, "shop")

    program = _program(doc)

    raw_offers = doc.get("offers", [])
    if not isinstance(raw_offers, list):
        raise ConfigError("offers: use [[offers]] tables")
    offers = tuple(parse_offer(o, f"offers[{i}]") for i, o in enumerate(raw_offers))
    for i, offer in enumerate(offers):
        try:
            program.check_target(offer.target)
        except ValueError as exc:
            raise ConfigError(f"offers[{i}].target: {exc}") from None

    mq = _table(doc, "mqtt")
    mqtt = MqttSettings(
        **{
            f.name: _take(mq, "mqtt", f.name, int if f.name == "keepalive" else str, f.default)
            for f in fields(MqttSettings)
        }
    )
    _no_more(mq, "mqtt")
    if mqtt.password is not None and mqtt.password_file is not None:
        raise ConfigError("mqtt.password/mqtt.password_file: give only one of them")

    sv = _table(doc, "service")
    dflt = ServiceSettings()
    service = ServiceSettings(
        batch_max=_take(sv, "service", "batch_max", int, dflt.batch_max),
        sweep_seconds=float(
            _take(sv, "service", "sweep_seconds", (int, float), dflt.sweep_seconds)
        ),
        requests_retention_days=_take(
            sv, "service", "requests_retention_days", int, dflt.requests_retention_days
        ),
        checkpoint_seconds=float(
            _take(sv, "service", "checkpoint_seconds", (int, float), dflt.checkpoint_seconds)
        ),
    )
    _no_more(sv, "service")
    if service.requests_retention_days < 8:
        raise ConfigError(
            "service.requests_retention_days: must be at least 8 (the agent may repeat a "
            "request for 7 days)"
        )
    if service.checkpoint_seconds <= 0:
        raise ConfigError("service.checkpoint_seconds: must be above 0")
    if service.batch_max < 1:
        raise ConfigError("service.batch_max: must be at least 1")
    if service.sweep_seconds <= 0:
        raise ConfigError("service.sweep_seconds: must be above 0")

    sms = _table(doc, "sms")
    try:
        make_sender(sms, base_dir=Path("."))  # checks the table; touches nothing
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    logt = _table(doc, "log")
    log_level = _take(logt, "log", "level", str, None)
    log_format = _take(logt, "log", "format", str, None)
    log_file = _take(logt, "log", "file", str, None)
    _no_more(logt, "log")
    if log_format is not None and log_format not in ("text", "json"):
        raise ConfigError("log.format: must be text or json")
    met = _table(doc, "metrics")
    metrics = _take(met, "metrics", "listen", str, None)
    _no_more(met, "metrics")
    if metrics is not None:
        try:
            parse_host_port(metrics, port_zero=True)
        except ValueError as exc:
            raise ConfigError(f"metrics.listen: {exc}") from None
    if log_level is not None and log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log.level: must be DEBUG, INFO, WARNING or ERROR")

    return Settings(
        program=program,
        offers=offers,
        shop_name=shop_name,
        mqtt=mqtt,
        service=service,
        sms=sms,
        log_level=log_level,
        log_format=log_format,
        log_file=log_file,
        metrics=metrics,
    )


def load(path: str | Path | None) -> Settings:
    """Settings from a TOML file; None gives the defaults."""
    if path is None:
        return Settings()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the config file is not UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return parse(doc)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
