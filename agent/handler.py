"""Request handling: one terminal message in, the response message out (no sockets).

The jPOS-style "request listener": the link driver hands over each ACKed message, this
decides the answer from the journal and the backend port, and returns the bytes to
send. Order of checks: decodable (else 30, when the MTI can be read) -> MAC on
01xx/02xx/04xx (else 63, no other effect) -> terminal id -> duplicate (replay the
stored bytes) -> field rules (30/12/13) -> identity (14, never asks the backend) ->
the message's own rule. Advices and reversals are journaled before any network I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.journal import Journal
from protocols import identity, iso8583, mac, messages, mqtt
from protocols.iso8583 import FormatError
from protocols.messages import MessageError
from protocols.persian import ascii_digits
from protocols.response_codes import ResponseCode

log = logging.getLogger("agent.handler")

MAC_MTIS = ("01", "02", "04")


class Commit(Protocol):
    """The deferred journal write of an answer; told whether the terminal took it."""

    def __call__(self, taken: bool = True) -> None: ...


class BackendPort(Protocol):
    """What the handler needs of the MQTT client (agent.backend_client.BackendClient)."""

    def online(self) -> bool: ...

    def request(
        self, type: str, key: str, body: dict[str, Any], deadline: float
    ) -> mqtt.Response | None: ...


class ForwarderPort(Protocol):
    """What the handler needs of the forwarder: a quick look at an advice's fate."""

    def wait_result(self, doc_id: int, deadline: float) -> mqtt.Response | None: ...

    def kick(self) -> None: ...


class Handler:
    """Turns one request message into its response message (see module docstring)."""

    def __init__(
        self,
        *,
        journal: Journal,
        backend: BackendPort,
        mac_key: bytes,
        terminal_id: str,
        merchant_id: str,
        forwarder: ForwarderPort | None = None,
        inquiry_budget: float = 2.2,
        advice_wait: float = 0.4,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(mac_key, bytes | bytearray) or len(mac_key) != mac.KEY_SIZE:
            raise ValueError(f"the MAC key must be {mac.KEY_SIZE} bytes")
        self.journal = journal
        self.backend = backend
        self.forwarder = forwarder
        self._key = bytes(mac_key)
        self.terminal_id = mqtt.check_terminal_id(terminal_id)
        self.merchant_id = merchant_id
        self.inquiry_budget = inquiry_budget
        self.advice_wait = advice_wait
        self._monotonic = monotonic
        self._wall = wall
        # The pending journal write of `answer`, per link thread (one per TCP terminal).
        self._local = threading.local()
        #: Requests answered 91 (the backend did not answer in time), for the metrics.
        self.unreachable_answers = 0

    # --- entry point ---------------------------------------------------------------
    def handle(self, raw: bytes, received: float | None = None) -> bytes | None:
        """The response to `raw`, or None when it cannot be answered (no readable MTI)."""
        out, commit = self.answer(raw, received)
        if commit is not None:
            commit()
        return out

    def answer(
        self, raw: bytes, received: float | None = None
    ) -> tuple[bytes | None, Commit | None]:
        """Like `handle`, but an inquiry's or enrollment's journal write is handed back.

        The caller sends the response first and then runs `commit(taken)`: an fsync is
        kept off the inquiry's critical path. If the agent dies in between, a repeat is
        asked of the backend again, which answers it from its own store of idempotency
        keys. `taken=False` says the terminal certainly did not use the 0110 (every
        transmission NAKed: PROTOCOL.md 2.2, the transaction fails; or ACKed only after the
        terminal's 3 s): the quote it carried is released. Advices and reversals are
        always journaled before they are answered.
        """
        if received is None:
            received = self._monotonic()
        self._local.commit = None
        try:
            out = self._handle(bytes(raw), received)
        except Exception:  # a defect must still become an answer, not a dead link thread
            log.exception("internal error handling a message")
            fields, _ = iso8583.decode_partial(bytes(raw))
            return self._answer(fields, ResponseCode.MALFUNCTION), None
        commit, self._local.commit = self._local.commit, None
        return out, commit

    def _handle(self, raw: bytes, received: float) -> bytes | None:
        fields, error = iso8583.decode_partial(raw)
        if error is not None:
            log.warning("format error in field %s: %s", error.field, error.reason)
            return self._answer(fields, ResponseCode.FORMAT_ERROR)
        mti = fields["t"]
        if mti[:2] in MAC_MTIS and not mac.verify(raw, self._key):
            log.warning("MAC missing or wrong on %s stan %s", mti, fields.get("11"))
            return self._answer(fields, ResponseCode.SECURITY_VIOLATION)
        if fields.get("41") is not None and fields.get("41") != self.terminal_id:
            log.warning("message for terminal %r, this agent serves %s", fields.get("41"),
                        self.terminal_id)
            return self._answer(fields, ResponseCode.FORMAT_ERROR)
        try:
            request = messages.parse_request(fields)
        except MessageError as exc:
            log.warning("refused %s: %s", mti, exc)
            return self._answer(fields, exc.response_code)
        if isinstance(request, messages.NetworkRequest):
            return self._network(fields, request)
        key = mqtt.idempotency_key(
            self.terminal_id, mti, request.header.stan, request.header.transmitted_at
        )
        found = self.journal.find(key)
        if found is not None:  # a repeat (rare): read its stored answer the journal's way
            again = self.journal.response_for(key)
            if again is not None:
                log.info("repeated %s stan %s: same response again", mti, request.header.stan)
                return again
            # Journaled but killed before the answer was stored: answer as if offline.
            out = self._answer(fields, ResponseCode.APPROVED)
            return self.journal.set_response(found[0], out) if out is not None else None
        try:
            if isinstance(request, messages.EnrollmentRequest | messages.InquiryRequest):
                return self._authorization(fields, request, key, received)
            if isinstance(request, messages.PurchaseAdvice):
                return self._advice(fields, request, key, received)
            return self._reversal(fields, request, key)
        except identity.IdentityError as exc:
            log.info("%s stan %s: invalid phone or card (%s)", mti, request.header.stan, exc)
            return self._answer(fields, exc.response_code)

    # --- building answers ----------------------------------------------------------
    def _answer(
        self, fields: Mapping[str, Any], code: str, items: Mapping[str, str] | None = None
    ) -> bytes | None:
        try:
            out = messages.respond(fields, code, items)
        except (MessageError, FormatError, ValueError) as exc:
            log.warning("cannot answer: %s", exc)
            return None
        if out["t"][:2] in MAC_MTIS:
            return mac.sign(out, self._key)
        return iso8583.encode(out)

    def _network(self, fields: Mapping[str, Any], request: messages.NetworkRequest) -> bytes | None:
        status = "ON" if self.backend.online() else "OF"
        queued = self.journal.queued()
        log.info("0800 code %s: ST %s QD %d", request.code, status, queued)
        items = messages.response_tlv(
            messages.NetworkResponse(ResponseCode.APPROVED, status, queued)
        )
        return self._answer(fields, ResponseCode.APPROVED, items)

    def _authorization(
        self,
        fields: Mapping[str, Any],
        request: messages.EnrollmentRequest | messages.InquiryRequest,
        key: str,
        received: float,
    ) -> bytes | None:
        if isinstance(request, messages.EnrollmentRequest):
            kind = "enroll"
            body: dict[str, Any] = {
                "phone": identity.normalize_phone(request.phone),
                "referrer": _referrer(request.referrer),
            }
            who = identity.mask_phone(body["phone"])
        else:
            kind = "inquiry"
            otp = ascii_digits(request.otp) if request.otp else None
            body = {"gross": request.amount, "redeem": request.redeem, "otp": otp}
            if request.phone is not None:
                body["phone"] = identity.normalize_phone(request.phone)
                who = identity.mask_phone(body["phone"])
            else:
                body["card"] = identity.normalize_card(request.card or "")
                who = identity.mask_card(body["card"])
        deadline = received + self.inquiry_budget
        reply = None
        asked = self._monotonic()
        if self.backend.online():
            reply = self.backend.request(kind, key, body, deadline)
        if reply is None:
            log.warning("%s stan %s for %s: backend did not answer in time: 91",
                        kind, request.header.stan, who)
            out = self._answer(fields, ResponseCode.BACKEND_UNREACHABLE)
            self.unreachable_answers += 1
            if out is not None and kind == "inquiry":
                # The backend may still carry it out (hung, not dead): journal a release
                # before the terminal hears 91, so no credit is ever held for this quote.
                self._record(key, request.mti, out, _release(key, None, "unanswered"))
                if self.forwarder is not None:
                    self.forwarder.kick()
                return out
        else:
            log.info("%s stan %s for %s: %s (backend %.1f ms)", kind, request.header.stan, who,
                     reply.code, (self._monotonic() - asked) * 1000)
            items = _enroll_tlv(reply) if kind == "enroll" else _inquiry_tlv(reply)
            out = self._answer(fields, reply.code, items)
        if out is not None:
            response = out
            quote_id = reply.body.get("quote_id") if reply is not None and reply.ok else None

            def commit(taken: bool = True) -> None:
                if taken or not quote_id:
                    self._record(key, request.mti, response)
                    return
                log.warning("inquiry stan %s: the terminal did not take the 0110, "
                            "releasing its quote", request.header.stan)
                # A repeat of this inquiry must not hand out the released quote: it
                # gets the no-discount answer instead.
                unanswered = self._answer(fields, ResponseCode.BACKEND_UNREACHABLE)
                self._record(
                    key, request.mti, unanswered or response,
                    _release(key, quote_id, "undelivered"),
                )
                if self.forwarder is not None:
                    self.forwarder.kick()

            self._local.commit = commit
        log.debug("%s stan %s answered %.1f ms after it was received", kind,
                  request.header.stan, (self._monotonic() - received) * 1000)
        return out

    def _record(
        self,
        key: str,
        mti: str,
        response: bytes,
        forward: tuple[str, dict[str, Any], str] | None = None,
    ) -> None:
        try:
            self.journal.record(key, mti, self._wall(), response=response, forward=forward)
        except ValueError:  # the same key answered meanwhile: keep the first
            pass

    def _advice(
        self,
        fields: Mapping[str, Any],
        request: messages.PurchaseAdvice,
        key: str,
        received: float,
    ) -> bytes | None:
        h = request.header
        body: dict[str, Any] = {
            "stan": h.stan,
            "transmitted_at": h.transmitted_at,
            "local_date": h.local_date,
            "local_time": h.local_time,
            "occurred_at": _iso(self._wall()),
            "amount": request.amount,
            "gross": request.gross,
            "rrn": request.rrn,
            "auth_code": request.auth_code,
            "bank_code": request.bank_code,
            "quote_id": request.quote_id,
            "phone": identity.normalize_phone(request.phone) if request.phone else None,
            "card": identity.normalize_card(request.card) if request.card else None,
        }
        mqtt.check_request(
            mqtt.Request("advice", "check", key, self.terminal_id, self.merchant_id, body)
        )
        plain = self._answer(fields, ResponseCode.APPROVED)
        wait = self.forwarder is not None and self.advice_wait > 0 and self.backend.online()
        doc_id = self.journal.record(
            key, request.mti, self._wall(), response=None if wait else plain,
            forward=("advice", body), stan=h.stan, rrn=request.rrn, amount=request.amount,
        )
        log.info("advice stan %s amount %d journaled", h.stan, request.amount)
        if not wait or self.forwarder is None:
            if self.forwarder is not None:
                self.forwarder.kick()
            return plain
        reply = self.forwarder.wait_result(doc_id, received + self.advice_wait)
        out = plain
        if reply is not None and reply.ok:
            out = self._answer(fields, ResponseCode.APPROVED, _advice_tlv(reply)) or plain
        if out is None:
            return None
        return self.journal.set_response(doc_id, out)  # a concurrent repeat's answer wins

    def _reversal(
        self, fields: Mapping[str, Any], request: messages.ReversalAdvice, key: str
    ) -> bytes | None:
        h = request.header
        now = self._wall()
        original = self.journal.find_original(h.stan, request.rrn, now)
        if original is None:
            log.info("reversal of stan %s: original unknown or too old: 12", h.stan)
            out = self._answer(fields, ResponseCode.INVALID_TRANSACTION)
            if out is not None:
                self.journal.record(key, request.mti, now, response=out)
            return out
        orig_id, orig = original
        if orig.get("amt") is not None and orig["amt"] != request.amount:
            # 3.2: a reversal carries the original's field 4 (0 only for a declined one)
            log.info("reversal of stan %s: amount %d, its advice's was %d: 13", h.stan,
                     request.amount, orig["amt"])
            return self._answer(fields, ResponseCode.INVALID_AMOUNT)
        out = self._answer(fields, ResponseCode.APPROVED)
        if out is None:
            return None
        if orig.get("reversed"):
            log.info("reversal of stan %s: already reversed, no second effect", h.stan)
            self.journal.record(key, request.mti, now, response=out)
            return out
        body: dict[str, Any] = {
            "stan": h.stan,
            "transmitted_at": h.transmitted_at,
            "occurred_at": _iso(now),
            "amount": request.amount,
            "rrn": request.rrn,
            "original_key": orig["key"],
            "quote_id": request.quote_id,
            "phone": identity.normalize_phone(request.phone) if request.phone else None,
            "card": identity.normalize_card(request.card) if request.card else None,
        }
        self.journal.record(
            key, request.mti, now, response=out, forward=("reversal", body), original=orig_id
        )
        log.info("reversal of stan %s journaled", h.stan)
        if self.forwarder is not None:
            self.forwarder.kick()
        return out


def _referrer(typed: str | None) -> str | None:
    """The referrer's phone, normalised when it is a phone number at all. A mistyped
    referrer must not stop the enrolment: it goes to the backend as typed (ASCII digits),
    which enrols the member without it and says so on the display."""
    if not typed:
        return None
    try:
        return identity.normalize_phone(typed)
    except identity.IdentityError:
        return ascii_digits(typed).strip()[:32] or None


def _release(
    inquiry_key: str, quote_id: str | None, reason: str
) -> tuple[str, dict[str, Any], str]:
    """The journal's forward entry that gives an inquiry up (docs/mqtt.md, release)."""
    body = {"inquiry_key": inquiry_key, "quote_id": quote_id, "reason": reason}
    return "release", body, mqtt.release_key(inquiry_key)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _text(body: Mapping[str, Any], name: str) -> str | None:
    """A text of the backend's body for field 48; an empty one is left out."""
    return body.get(name) or None


def _enroll_tlv(reply: mqtt.Response) -> dict[str, str]:
    if not reply.ok:
        return {}
    b = reply.body
    return messages.response_tlv(messages.EnrollmentResponse(
        reply.code, member_code=_text(b, "member_code"), new=bool(b.get("new")),
        balance=b.get("balance"), display=_text(b, "display"), receipt=_text(b, "receipt"),
    ))


def _inquiry_tlv(reply: mqtt.Response) -> dict[str, str]:
    if not reply.ok:
        return {}
    b = reply.body
    if b.get("otp_required"):  # the terminal asks for the code; nothing else applies yet
        return messages.response_tlv(
            messages.InquiryResponse(reply.code, otp_required=True, display=_text(b, "display"))
        )
    return messages.response_tlv(messages.InquiryResponse(
        reply.code, quote_id=_text(b, "quote_id"), gross=b.get("gross"),
        discount=b.get("discount"), net=b.get("net"), balance=b.get("balance"),
        tier=_text(b, "tier"), display=_text(b, "display"), receipt=_text(b, "receipt"),
    ))


def _advice_tlv(reply: mqtt.Response) -> dict[str, str]:
    b = reply.body
    return messages.response_tlv(messages.AdviceResponse(
        reply.code, earned=b.get("earned"), balance=b.get("balance"),
        receipt=_text(b, "receipt"),
    ))
