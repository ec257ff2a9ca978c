"""The terminal's payment logic: sign-on, echo, enrolment, inquiry, OTP, bank charge,
purchase advice (repeated until answered), receipt, reversal.

No sockets or threads here: messages go out through a `Channel`, time comes from a
`Clock`, the card is charged by a `BankHost`. Tests drive it with a fake channel; the
CLI, the UI and the demo give it one over the real link.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from protocols import iso8583, mac, messages
from protocols.persian import ascii_digits
from protocols.response_codes import ResponseCode
from terminal_sim.bank import Authorisation, BankHost, mask_pan
from terminal_sim.clock import Clock, local_time, transmission_time
from terminal_sim.printer import Printer, format_receipt, rials

#: PROTOCOL.md 3.6: 3 s for 0110, 2 s for 0230/0430/0810.
INQUIRY_TIMEOUT = 3.0
ADVICE_TIMEOUT = 2.0
NETWORK_TIMEOUT = 2.0


def _one_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
    """A transaction holds the line: the periodic echo waits until it is over."""

    @functools.wraps(method)
    def wrapper(self: Terminal, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class Channel(Protocol):
    """Sends one encoded message and waits for the response with this MTI and STAN."""

    def exchange(self, message: bytes, response_mti: str, stan: str,
                 timeout: float) -> bytes | None: ...


@dataclass
class TerminalConfig:
    terminal_id: str = "T0000001"
    merchant_id: str = "M00000000000001"
    mac_key: bytes = bytes(16)
    inquiry_timeout: float = INQUIRY_TIMEOUT
    advice_timeout: float = ADVICE_TIMEOUT
    network_timeout: float = NETWORK_TIMEOUT
    #: How often one sale tries its advice before leaving it queued for later.
    advice_attempts: int = 5
    echo_interval: float = 60.0

    def __post_init__(self) -> None:
        if len(self.terminal_id) != 8:
            raise ValueError(f"terminal id must be 8 characters: {self.terminal_id!r}")
        if len(self.merchant_id) != 15:
            raise ValueError(f"merchant id must be 15 characters: {self.merchant_id!r}")
        if len(self.mac_key) != 16:
            raise ValueError("MAC key must be 16 bytes (32 hex digits)")


@dataclass
class Exchanged:
    """One request and what came back (None: no response in time or link down)."""

    request: Any
    fields: dict
    response: Any | None
    response_fields: dict | None = None
    note: str = ""

    @property
    def code(self) -> str | None:
        return None if self.response is None else self.response.code


@dataclass
class SaleResult:
    amount: int
    gross: int
    discount: int
    inquiry: Exchanged | None
    authorisation: Authorisation
    advice: Exchanged | None
    advice_answered: bool
    stan: str
    transmitted_at: str
    quote_id: str | None
    phone: str | None
    card: str | None
    receipt: Any = None
    reversed: bool = False
    otp_asked: bool = False
    #: What the display told a customer whose number is not a member ("" if a member).
    not_member: str = ""

    @property
    def approved(self) -> bool:
        return self.authorisation.approved


@dataclass
class Quote:
    """A sale before the bank card: what the customer sees and agrees to pay."""

    amount: int
    net: int
    discount: int
    inquiry: Exchanged | None
    quote_id: str | None
    phone: str | None
    card: str | None
    otp_asked: bool = False
    not_member: str = ""


#: ISO 8583:1987 39 = 17: the customer cancelled (the bank was never asked).
CUSTOMER_CANCELLATION = "17"


def not_member_text(card: bool = False) -> str:
    """Response 14 on an inquiry: the customer is told, and how to join."""
    who = "این کارت" if card else "این شماره"
    return (f"{who} عضو باشگاه نیست. برای عضویت، در صفحه اول کلید «باشگاه» را بزنید "
            "و شماره موبایل را وارد کنید")


@dataclass
class Pending:
    """An advice (0220 or 0420) not yet answered: resent as is, same 11, 7 and 41."""

    raw: bytes
    response_mti: str
    stan: str
    label: str


@dataclass
class Terminal:
    config: TerminalConfig
    channel: Channel
    clock: Clock = field(default_factory=Clock)
    bank: BankHost = field(default_factory=BankHost)
    printer: Printer = field(default_factory=Printer)
    stan: int = 0
    display: str = ""
    pending: list[Pending] = field(default_factory=list)
    on_event: Callable[[str, str], None] | None = None
    last_echo: float | None = None
    signed_on: bool = False
    echoes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.RLock()

    @property
    def line(self) -> Any:
        """The lock one transaction holds; a script holds it to keep the echo out."""
        return self._lock

    # --- building blocks --------------------------------------------------------------
    def _event(self, kind: str, text: str) -> None:
        if kind == "display":
            self.display = text
        if self.on_event:
            self.on_event(kind, text)

    def next_stan(self) -> str:
        self.stan = self.stan % 999999 + 1
        return f"{self.stan:06d}"

    def header(self, stan: str | None = None, at: datetime | None = None) -> messages.Header:
        at = at or self.clock.now()
        hhmmss, mmdd = local_time(at)
        return messages.Header(
            transmitted_at=transmission_time(at), stan=stan or self.next_stan(),
            local_time=hhmmss, local_date=mmdd, terminal_id=self.config.terminal_id,
            merchant_id=self.config.merchant_id)

    def encode(self, request: Any) -> tuple[dict, bytes]:
        fields = request.to_fields()
        if request.mti.startswith("08"):
            return fields, iso8583.encode(fields)
        return fields, mac.sign(fields, self.config.mac_key)

    def _exchange_raw(self, raw: bytes, response_mti: str, stan: str,
                      timeout: float) -> tuple[dict | None, Any | None, str]:
        with self._lock:
            answer = self.channel.exchange(raw, response_mti, stan, timeout)
            self.last_echo = self.clock.monotonic()  # any traffic shows the line is alive
        if answer is None:
            return None, None, "no response"
        try:
            fields = iso8583.decode(answer)
        except ValueError as exc:
            return None, None, f"undecodable response: {exc}"
        if not response_mti.startswith("08") and not mac.verify(answer, self.config.mac_key):
            return fields, None, "response MAC wrong"
        try:
            return fields, messages.parse_response(fields), ""
        except (ValueError, messages.MessageError) as exc:
            return fields, None, f"bad response: {exc}"

    def send(self, request: Any, timeout: float) -> Exchanged:
        fields, raw = self.encode(request)
        resp_mti = f"{int(request.mti) + 10:04d}"
        rfields, resp, note = self._exchange_raw(raw, resp_mti, request.header.stan, timeout)
        if note:
            self._event("log", f"{request.mti} {request.header.stan}: {note}")
        return Exchanged(request, fields, resp, rfields, note)

    # --- network management -----------------------------------------------------------
    @_one_at_a_time
    def network(self, code: str) -> Exchanged:
        ex = self.send(messages.NetworkRequest(self.header(), code), self.config.network_timeout)
        if code == "001" and ex.code == ResponseCode.APPROVED:
            self.signed_on = True
        return ex

    def sign_on(self) -> Exchanged:
        return self.network("001")

    def sign_off(self) -> Exchanged:
        return self.network("002")

    def echo(self) -> Exchanged:
        self.echoes += 1
        return self.network("301")

    def echo_due(self) -> bool:
        """A real terminal echoes when the line has been quiet for `echo_interval`."""
        return (self.last_echo is None
                or self.clock.monotonic() - self.last_echo >= self.config.echo_interval)

    # --- loyalty ----------------------------------------------------------------------
    @_one_at_a_time
    def enroll(self, phone: str, referrer: str | None = None) -> Exchanged:
        self.flush_pending()
        req = messages.EnrollmentRequest(self.header(), phone, referrer)
        ex = self.send(req, self.config.inquiry_timeout)
        r = ex.response
        if r is None:
            self._event("display", "باشگاه در دسترس نیست")
            return ex
        approved = r.code == ResponseCode.APPROVED
        self._event("display", r.display or ("عضو شدید" if approved else f"خطا {r.code}"))
        if approved:
            self.printer.print(format_receipt(
                title="عضویت باشگاه مشتریان", at=self.clock.now(),
                terminal_id=self.config.terminal_id, merchant_id=self.config.merchant_id,
                stan=req.header.stan, rows=self._member_code_row(r), loyalty=r.receipt or ""))
        return ex

    @_one_at_a_time
    def inquire(self, amount: int, *, phone: str | None = None, card: str | None = None,
                redeem: int | None = None, otp: str | None = None) -> Exchanged:
        req = messages.InquiryRequest(self.header(), amount, phone=phone, card=card,
                                      redeem=redeem, otp=otp)
        ex = self.send(req, self.config.inquiry_timeout)
        if ex.code == ResponseCode.UNKNOWN_MEMBER:
            self._event("display", not_member_text(card=bool(card) and not phone))
        elif ex.response is not None and ex.response.display:
            self._event("display", ex.response.display)
        return ex

    @_one_at_a_time
    def quote(self, amount: int, *, phone: str | None = None, card: str | None = None,
              redeem: int | None = None,
              otp_provider: Callable[[], str | None] | None = None) -> Quote:
        """What the customer is shown before the bank card: the club's discount and the
        amount to pay (the inquiry, with its one-time code when the club asks for one)."""
        self.flush_pending()
        inquiry: Exchanged | None = None
        quote_id: str | None = None
        net, discount, otp_asked, not_member = amount, 0, False, ""
        notice = ""
        if phone or card:
            inquiry = self.inquire(amount, phone=phone, card=card, redeem=redeem)
            r = inquiry.response
            if r is not None and r.code == ResponseCode.APPROVED and r.otp_required:
                otp_asked = True
                self._event("otp", "کد یکبار مصرف را وارد کنید")
                code = otp_provider() if otp_provider else None
                if code:
                    # The SMS prints the code in Persian digits; the keypad sends ASCII ones.
                    inquiry = self.inquire(amount, phone=phone, card=card, redeem=redeem,
                                           otp=ascii_digits(code))
                    r = inquiry.response
            if r is not None and r.code == ResponseCode.APPROVED and r.quote_id:
                quote_id, discount, net = r.quote_id, r.discount or 0, r.net or amount
                notice = r.display or ""
            elif r is None or r.code == ResponseCode.BACKEND_UNREACHABLE:
                notice = "باشگاه در دسترس نیست؛ پرداخت کامل"
            elif r.code == ResponseCode.WRONG_OTP:
                notice = "کد یکبار مصرف نادرست است؛ پرداخت کامل"
            elif r.code == ResponseCode.UNKNOWN_MEMBER:  # not a member: nothing to record
                notice = not_member = not_member_text(card=bool(card) and not phone)
                phone = card = None
        lines = [notice] if notice else []
        if discount:
            lines += [f"مبلغ خرید: {rials(amount)}", f"تخفیف باشگاه: {rials(discount)}"]
        lines.append(f"مبلغ قابل پرداخت: {rials(net)}")
        self._event("display", "\n".join(lines))
        return Quote(amount, net, discount, inquiry, quote_id, phone, card, otp_asked,
                     not_member)

    @_one_at_a_time
    def pay(self, quote: Quote, pan: str, pin: str) -> SaleResult:
        """The bank card for the quoted amount, then the purchase advice and the receipt."""
        net = quote.net
        auth = self.bank.charge(pan, pin, net)
        self._event("bank", f"{auth.code} {auth.reason} rrn={auth.rrn}")
        header = self.header()
        advice_ex: Exchanged | None = None
        answered = False
        if quote.quote_id or quote.phone or quote.card:
            req = messages.PurchaseAdvice(
                header, net, auth.rrn, auth.auth_code, auth.code, quote.amount,
                quote_id=quote.quote_id, phone=None if quote.quote_id else quote.phone,
                card=None if quote.quote_id else quote.card, pan=mask_pan(pan))
            advice_ex, answered = self._advise(req, "purchase advice")
        result = SaleResult(net, quote.amount, quote.discount, quote.inquiry, auth, advice_ex,
                            answered, header.stan, header.transmitted_at, quote.quote_id,
                            quote.phone, quote.card, otp_asked=quote.otp_asked,
                            not_member=quote.not_member)
        result.receipt = self._sale_receipt(result)
        self.printer.print(result.receipt)
        if auth.approved:
            self._event("display", "\n".join(filter(None, ["تراکنش موفق", quote.not_member])))
        else:
            self._event("display", f"رد شد: {auth.reason}")
        return result

    @_one_at_a_time
    def cancel(self, quote: Quote) -> Exchanged | None:
        """The customer walked away after the discount was shown: the quote is given back
        with a declined advice (4 = 0, 39 = 17, customer cancellation), which releases the
        hold at once (PROTOCOL.md 3.2) instead of leaving it to its expiry."""
        if not quote.quote_id:
            return None
        header = self.header()
        req = messages.PurchaseAdvice(header, 0, f"{header.stan:0>12}", None,
                                      CUSTOMER_CANCELLATION, quote.amount,
                                      quote_id=quote.quote_id)
        ex, _ = self._advise(req, "cancelled sale")
        self._event("display", "خرید لغو شد")
        return ex

    @_one_at_a_time
    def sale(self, amount: int, pan: str, pin: str, *, phone: str | None = None,
             card: str | None = None, redeem: int | None = None,
             otp_provider: Callable[[], str | None] | None = None) -> SaleResult:
        """One purchase from the cashier's amount to the printed receipt."""
        quote = self.quote(amount, phone=phone, card=card, redeem=redeem,
                           otp_provider=otp_provider)
        return self.pay(quote, pan, pin)

    @_one_at_a_time
    def reverse(self, sale: SaleResult) -> Exchanged | None:
        """Undo a purchase: money back to the card, loyalty effects undone by the 0420.

        Only an approved purchase took money, so only it can be reversed (once); for any
        other the display says why and nothing is sent (None).
        """
        if not sale.approved:
            self._event("display", "برگشت ممکن نیست: این خرید پرداخت نشده بود "
                                   f"({sale.authorisation.reason})")
            return None
        if sale.reversed:
            self._event("display", "برگشت ممکن نیست: این خرید قبلا برگشت خورده است")
            return None
        self.flush_pending()
        header = self.header(stan=sale.stan)
        req = messages.ReversalAdvice(
            header, sale.amount, sale.authorisation.rrn, quote_id=sale.quote_id,
            phone=None if sale.quote_id else sale.phone,
            card=None if sale.quote_id else sale.card)
        ex, _answered = self._advise(req, "reversal advice")
        self._event("display", "خرید برگشت خورد" if ex.code == ResponseCode.APPROVED
                    else f"برگشت: پاسخ {ex.code or 'نیامد'}")
        self.bank.refund(sale.authorisation.pan, sale.amount)
        sale.reversed = True
        self.printer.print(format_receipt(
            title="برگشت خرید", at=self.clock.now(), terminal_id=self.config.terminal_id,
            merchant_id=self.config.merchant_id, stan=sale.stan,
            rows=[("مبلغ", rials(sale.amount)), ("مرجع", sale.authorisation.rrn)]))
        return ex

    def _advise(self, request: Any, label: str) -> tuple[Exchanged, bool]:
        fields, raw = self.encode(request)
        resp_mti = f"{int(request.mti) + 10:04d}"
        ex = Exchanged(request, fields, None, None, "not sent")
        for attempt in range(1, self.config.advice_attempts + 1):
            rfields, resp, note = self._exchange_raw(
                raw, resp_mti, request.header.stan, self.config.advice_timeout)
            ex = Exchanged(request, fields, resp, rfields, note)
            if resp is not None:
                return ex, True
            self._event("log", f"{label} {request.header.stan} try {attempt}: {note}")
        self.pending.append(Pending(raw, resp_mti, request.header.stan, label))
        self._event("log", f"{label} {request.header.stan} queued for later")
        return ex, False

    @_one_at_a_time
    def flush_pending(self) -> int:
        """Resend queued advices (same bytes) before anything new; returns how many left."""
        still: list[Pending] = []
        for p in self.pending:
            _fields, resp, _note = self._exchange_raw(p.raw, p.response_mti, p.stan,
                                                      self.config.advice_timeout)
            if resp is None:
                still.append(p)
        self.pending = still
        return len(still)

    @staticmethod
    def _member_code_row(r: Any) -> list[tuple[str, str]]:
        """The member code, unless the club's RL lines already print it."""
        code = r.member_code or ""
        return [] if code in (r.receipt or "") else [("کد عضویت", code)]

    def _sale_receipt(self, s: SaleResult) -> Any:
        if s.approved:
            rows = [("مبلغ خرید", rials(s.gross))]
            if s.discount:
                rows.append(("تخفیف باشگاه", rials(s.discount)))
            rows.append(("مبلغ پرداختی", rials(s.amount)))
        else:  # nothing was paid and the club's hold is released: only what was tried
            rows = [("مبلغ", rials(s.amount))]
        rows += [("کارت", mask_pan(s.authorisation.pan)),
                 ("مرجع", s.authorisation.rrn),
                 ("نتیجه", "تایید شد" if s.approved else f"رد شد ({s.authorisation.code})")]
        loyalty = ""
        if s.advice and s.advice.response is not None and s.advice.response.receipt:
            loyalty = s.advice.response.receipt
        elif s.inquiry and s.inquiry.response is not None and s.inquiry.response.receipt:
            loyalty = s.inquiry.response.receipt
        return format_receipt(title="رسید خرید", at=self.clock.now(),
                              terminal_id=self.config.terminal_id,
                              merchant_id=self.config.merchant_id, stan=s.stan, rows=rows,
                              loyalty=loyalty if s.approved else "", footer=s.not_member)
