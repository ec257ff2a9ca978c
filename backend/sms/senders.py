"""Ways to hand an SMS to the world: a local file, or Kavenegar's REST API.

The Kavenegar adapter is a few lines over urllib rather than the provider's SDK. Its API
key is part of every request URL (`/v1/{key}/...`), so it is kept out of every message,
exception and repr this module makes; urllib's own exceptions are not chained, because they
carry the URL.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPException, InvalidURL
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from protocols.numbers import is_int, is_number
from protocols.persian import ascii_digits

DEFAULT_BASE_URL = "https://api.kavenegar.com"
DEFAULT_FILE = "sms-outbox.jsonl"
DEFAULT_INBOX = "sms-inbox.jsonl"
DEFAULT_RECEIVE_SECONDS = 15.0
REDACTED = "***"

#: Kavenegar `return.status` values that will fail the same way on every retry
#: (https://kavenegar.com/rest.html, "خطاها"): bad parameters, key or account problems,
#: invalid receptor or sender line, bad message, unknown template, token format.
PERMANENT_STATUSES = frozenset(
    {400, 401, 403, 404, 405, 406, 407, 411, 412, 413, 414, 415, 416, 417, 419, 422,
     424, 426, 428, 430, 431, 432, 501, 607}
)  # fmt: skip
#: 4xx statuses that mean "try again later": 402 operation failed, 409 server busy,
#: 408/429/451 time-out and rate limits, 418 out of credit (the shop tops up; the SMS
#: must not be lost meanwhile). Other 4xx are permanent, 5xx temporary (but 501:
#: Kavenegar's "test account may only send to its owner").
_TEMPORARY_4XX = frozenset({402, 408, 409, 418, 429, 451})

#: messages one `sms/receive` answer holds at most (SDK documentation; Kavenegar's page
#: names no limit), and the answers read in one poll when each is full
RECEIVE_PAGE = 100
RECEIVE_PAGES = 10

_DIGIT_RUN = re.compile(r"[0-9]{4,10}")


@dataclass(frozen=True, slots=True)
class Incoming:
    """An SMS a member sent to the club's line, as the gateway reports it."""

    phone: str
    text: str


class SendError(Exception):
    """An SMS not accepted; `temporary` says whether trying again later may help."""

    def __init__(self, message: str, *, temporary: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.status = status


@runtime_checkable
class Sender(Protocol):
    """A sender may also have `send_many(messages) -> list[SendError | None]` for a batch
    of (phone, text, kind) at once (a local one: the file); the worker uses it when the
    sender's `sends_in_batches` is true."""

    def send(self, phone: str, text: str, kind: str) -> None:
        """Deliver one SMS or raise SendError."""


def is_temporary(status: int) -> bool:
    """Whether a Kavenegar (or HTTP) status is worth retrying."""
    if status in PERMANENT_STATUSES:
        return False
    if 400 <= status < 500:
        return status in _TEMPORARY_4XX
    return True


def otp_token(text: str) -> str:
    """The one-time code in an OTP text: its last run of 4-10 digits, as ASCII.

    `texts.otp_sms` puts the code last, so digits in a shop's name do not get in the way.
    """
    runs = _DIGIT_RUN.findall(ascii_digits(text))
    if not runs:
        raise SendError("no one-time code in the OTP text", temporary=False)
    return runs[-1]


class FileSender:
    """Appends one JSON line per SMS; the default, read by the demo and the tests.

    Its incoming messages are the lines `{"phone": ..., "text": ...}` someone (a test, the
    demo) appends to `inbox` (default: sms-inbox.jsonl beside the outbox file)."""

    def __init__(self, path: str | Path, inbox: str | Path | None = None) -> None:
        self.path = Path(path)
        self.inbox = Path(inbox) if inbox is not None else self.path.with_name(DEFAULT_INBOX)
        self._lock = threading.Lock()

    def receive(self) -> list[Incoming]:
        """The messages written to the inbox since the last call, each taken once: the
        file is renamed away before it is read (atomic, so with several processes one of
        them takes each line), then removed."""
        taking = self.inbox.with_name(f"{self.inbox.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.replace(self.inbox, taking)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SendError(f"cannot take {self.inbox}: {exc.strerror}", temporary=True) from None
        try:
            lines = taking.read_text(encoding="utf-8").splitlines()
        finally:
            taking.unlink(missing_ok=True)
        out = []
        for line in lines:
            try:
                record = json.loads(line)
                out.append(Incoming(str(record["phone"]), str(record["text"])))
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line: not a message
        return out

    def __repr__(self) -> str:
        return f"FileSender({str(self.path)!r})"

    def send(self, phone: str, text: str, kind: str) -> None:
        self._append(self._line(phone, text, kind, datetime.now(UTC)))

    @property
    def sends_in_batches(self) -> bool:
        """Whether the worker may use send_many (not when a subclass changed send)."""
        return type(self).send is FileSender.send

    def send_many(self, messages: list[tuple[str, str, str]]) -> list[SendError | None]:
        """Several SMS (phone, text, kind) in one write: what each one's send would have
        done (None: sent), with one system call for all instead of three each."""
        at = datetime.now(UTC)
        try:
            self._append(b"".join(self._line(p, t, k, at) for p, t, k in messages))
        except SendError as exc:
            return [exc] * len(messages)
        return [None] * len(messages)

    @staticmethod
    def _line(phone: str, text: str, kind: str, at: datetime) -> bytes:
        record = {
            "at": at.isoformat(timespec="milliseconds"),
            "phone": phone,
            "kind": kind,
            "text": text,
        }
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")

    def _append(self, line: bytes) -> None:
        try:
            with self._lock:
                # One write() on an O_APPEND descriptor: lines from several processes
                # never interleave (a short write is finished, still under our lock).
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                except FileNotFoundError:  # the folder first (not on every SMS: a syscall)
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    done = os.write(fd, line)
                    while done < len(line):
                        done += os.write(fd, line[done:])
                finally:
                    os.close(fd)
        except OSError as exc:
            raise SendError(f"cannot write {self.path}: {exc.strerror}", temporary=True) from None


class KavenegarSender:
    """Kavenegar's `sms/send.json`, and `verify/lookup.json` for one-time codes."""

    def __init__(
        self,
        api_key: str,
        line: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 5.0,
        otp_template: str | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty string")
        if not isinstance(line, str) or not line.strip():
            raise ValueError("line must be a non-empty string")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if not is_number(timeout) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if otp_template is not None and (not isinstance(otp_template, str) or not otp_template):
            raise ValueError("otp_template must be a non-empty string")
        self._key = api_key.strip()
        self.line = line.strip()
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.otp_template = otp_template

    def __repr__(self) -> str:
        return (
            f"KavenegarSender(api_key={REDACTED!r}, line={self.line!r}, "
            f"base_url={self.base_url!r}, otp_template={self.otp_template!r})"
        )

    def _url(self, method: str) -> str:
        return f"{self.base_url}/v1/{urllib.parse.quote(self._key, safe='')}/{method}.json"

    def redact(self, text: str) -> str:
        """`text` with the API key (plain or URL-quoted) replaced by ***."""
        for form in {self._key, urllib.parse.quote(self._key, safe="")}:
            text = text.replace(form, REDACTED)
        return text

    def send(self, phone: str, text: str, kind: str) -> None:
        if kind == "otp" and self.otp_template:
            method = "verify/lookup"
            params = {"receptor": phone, "token": otp_token(text), "template": self.otp_template}
        else:
            method = "sms/send"
            params = {"receptor": phone, "sender": self.line, "message": text}
        self._call(method, params)

    def receive(self) -> list[Incoming]:
        """The line's unread incoming SMS (`sms/receive.json`, `linenumber`, `isread=0`:
        Kavenegar marks what it returns read, so each comes once); polled by the worker.
        An answer holds at most `RECEIVE_PAGE` messages: a full one is followed by another
        call at once (at most `RECEIVE_PAGES`), so a busy line is not read 100 a poll."""
        out = []
        for _ in range(RECEIVE_PAGES):
            answer = self._call("sms/receive", {"linenumber": self.line, "isread": "0"})
            entries = answer.get("entries") or []
            entries = entries if isinstance(entries, list) else []
            for e in entries:
                if isinstance(e, dict) and e.get("sender") and isinstance(e.get("message"), str):
                    out.append(Incoming(str(e["sender"]), e["message"]))
            if len(entries) < RECEIVE_PAGE:
                break
        return out

    def _call(self, method: str, params: Mapping[str, str]) -> dict[str, Any]:
        """POST `params` to `method`; the gateway's answer, or SendError."""
        try:
            request = urllib.request.Request(
                self._url(method),
                data=urllib.parse.urlencode(params).encode("utf-8"),
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                },
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                http_status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            # Kavenegar answers errors with the HTTP status set to its own status code and
            # the same JSON body as on success: read the body, not only the code.
            try:
                http_status, body = exc.code, exc.read()
            except (OSError, HTTPException):
                http_status, body = exc.code, b""
            finally:
                exc.close()
        except TimeoutError:
            raise SendError(
                f"{method}: no answer within {self.timeout:g} s", temporary=True
            ) from None
        except urllib.error.URLError as exc:
            reason = self.redact(str(exc.reason))
            raise SendError(
                f"{method}: cannot reach the gateway: {reason}", temporary=True
            ) from None
        except (ValueError, InvalidURL) as exc:  # these quote the URL, key included
            reason = self.redact(f"{type(exc).__name__}: {exc}")
            raise SendError(f"{method}: bad request: {reason}", temporary=False) from None
        except (OSError, HTTPException) as exc:
            reason = self.redact(f"{type(exc).__name__}: {exc}")
            raise SendError(f"{method}: connection failed: {reason}", temporary=True) from None
        self._check(method, http_status, body)
        answer = json.loads(body.decode("utf-8"))  # _check read it: a JSON object
        return answer if isinstance(answer, dict) else {}

    def _check(self, method: str, http_status: int, body: bytes) -> None:
        status: int | None = None
        message = ""
        try:
            answer = json.loads(body.decode("utf-8"))
            ret = answer["return"]
            status = int(ret["status"])
            message = str(ret.get("message", ""))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            status = None
        if status is None:
            # No Kavenegar answer at all (a proxy, a load balancer): judge by HTTP status.
            if http_status == 200:
                raise SendError(f"{method}: unreadable answer", temporary=True, status=None)
            raise SendError(
                f"{method}: HTTP {http_status} without a gateway answer",
                temporary=is_temporary(http_status),
                status=http_status,
            )
        if status == 200:
            return
        text = self.redact(message)[:200]
        raise SendError(
            f"{method}: gateway status {status}: {text}",
            temporary=is_temporary(status),
            status=status,
        )


def receive_seconds(cfg: Mapping[str, Any]) -> float:
    """`[sms] receive_seconds`: how often the worker asks the gateways for incoming SMS
    ("لغو" replies); 15 by default, a second in the demo."""
    value = cfg.get("receive_seconds", DEFAULT_RECEIVE_SECONDS)
    if not is_number(value) or value <= 0:
        raise ValueError("sms.receive_seconds must be a positive number of seconds")
    return float(value)


def make_sender(cfg: Mapping[str, Any], *, base_dir: Path) -> Sender:
    """The sender the `[sms]` table of the backend's TOML asks for (file by default)."""
    if not isinstance(cfg, Mapping):
        raise ValueError("sms: must be a table")
    _only(cfg, {"sender", "file", "kavenegar", "receive_seconds"}, "sms")
    receive_seconds(cfg)
    kind = cfg.get("sender", "file")
    if kind not in ("file", "kavenegar"):
        raise ValueError('sms.sender must be "file" or "kavenegar"')
    file = cfg.get("file", DEFAULT_FILE)
    if not isinstance(file, str) or not file.strip():
        raise ValueError("sms.file must be a non-empty path")
    kav = cfg.get("kavenegar", {})
    if not isinstance(kav, Mapping):
        raise ValueError("sms.kavenegar must be a table")
    if kind == "file":
        path = Path(file).expanduser()
        return FileSender(path if path.is_absolute() else Path(base_dir) / path)
    _only(kav, {"api_key", "api_key_env", "line", "base_url", "timeout", "otp_template"},
          "sms.kavenegar")  # fmt: skip
    if ("api_key" in kav) == ("api_key_env" in kav):
        raise ValueError("sms.kavenegar.api_key (or api_key_env) is required, and only one")
    if "api_key_env" in kav:
        var = kav["api_key_env"]
        if not isinstance(var, str) or not var:
            raise ValueError("sms.kavenegar.api_key_env must name an environment variable")
        api_key = os.environ.get(var, "")
        if not api_key.strip():
            raise ValueError(f"sms.kavenegar.api_key_env: environment variable {var} is not set")
    else:
        api_key = kav["api_key"]
        # Never echo the value: it is a secret.
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("sms.kavenegar.api_key must be a non-empty string")
    line = kav.get("line")
    if is_int(line):
        line = str(line)
    if not isinstance(line, str) or not line.strip():
        raise ValueError("sms.kavenegar.line (the sender number) is required")
    base_url = kav.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError("sms.kavenegar.base_url must start with http:// or https://")
    timeout = kav.get("timeout", 5.0)
    if not is_number(timeout) or timeout <= 0:
        raise ValueError("sms.kavenegar.timeout must be a positive number of seconds")
    template = kav.get("otp_template")
    if template is not None and (not isinstance(template, str) or not template.strip()):
        raise ValueError("sms.kavenegar.otp_template must be a non-empty string")
    return KavenegarSender(
        api_key, line, base_url=base_url, timeout=float(timeout), otp_template=template
    )


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for name in table:
        if name not in allowed:
            raise ValueError(f"{where}.{name}: unknown key (expected one of {sorted(allowed)})")
