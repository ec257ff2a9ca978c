"""The simulated bank host: authorises a card payment or declines it by rule.

Real terminals charge the card through the acquiring bank, which the loyalty system
never sees; only the outcome (field 39, 37, 38) reaches the purchase advice. This host
is deterministic so that scenarios can expect a given outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

APPROVED = "00"
INSUFFICIENT_FUNDS = "51"
WRONG_PIN = "55"
CARD_BLOCKED = "62"  # restricted card
HOST_TIMEOUT = "68"  # response received too late: the terminal treats it as declined

#: What the customer display says, in the customer's language.
REASONS = {
    APPROVED: "تایید شد",
    INSUFFICIENT_FUNDS: "موجودی کافی نیست",
    WRONG_PIN: "رمز اشتباه",
    CARD_BLOCKED: "کارت مسدود است",
    HOST_TIMEOUT: "بانک پاسخ نداد",
}


class BankError(ValueError):
    """A card the bank host does not know, or a bad amount."""


@dataclass
class Account:
    pan: str
    pin: str = "1234"
    balance: int = 100_000_000
    blocked: bool = False


@dataclass
class Authorisation:
    code: str
    rrn: str
    auth_code: str | None
    amount: int
    pan: str

    @property
    def approved(self) -> bool:
        return self.code == APPROVED

    @property
    def reason(self) -> str:
        return REASONS.get(self.code, "رد شد")


def mask_pan(pan: str) -> str:
    """The PAN as printed and sent in field 2: first six, last four."""
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


@dataclass
class BankHost:
    """Accounts by PAN; `timeouts` makes the next N charges time out."""

    accounts: dict[str, Account] = field(default_factory=dict)
    timeouts: int = 0
    rrn_seed: int = 0
    _counter: int = 0

    def open_account(self, pan: str, pin: str = "1234", balance: int = 100_000_000,
                     blocked: bool = False) -> Account:
        if not (pan.isascii() and pan.isdigit() and 16 <= len(pan) <= 19):
            raise BankError(f"a PAN is 16 to 19 digits: {pan!r}")
        acct = Account(pan, pin, balance, blocked)
        self.accounts[pan] = acct
        return acct

    def charge(self, pan: str, pin: str, amount: int) -> Authorisation:
        if amount <= 0:
            raise BankError(f"amount must be positive: {amount}")
        acct = self.accounts.get(pan)
        if acct is None:
            acct = self.open_account(pan)
        self._counter += 1
        rrn = f"{(self.rrn_seed + self._counter) % 10**12:012d}"
        if self.timeouts > 0:
            self.timeouts -= 1
            return Authorisation(HOST_TIMEOUT, rrn, None, amount, pan)
        if acct.blocked:
            code = CARD_BLOCKED
        elif pin != acct.pin:
            code = WRONG_PIN
        elif acct.balance < amount:
            code = INSUFFICIENT_FUNDS
        else:
            code = APPROVED
        if code != APPROVED:
            return Authorisation(code, rrn, None, amount, pan)
        acct.balance -= amount
        auth = f"A{self._counter % 100000:05d}"
        return Authorisation(code, rrn, auth, amount, pan)

    def refund(self, pan: str, amount: int) -> None:
        """A reversed purchase gives the money back."""
        if pan in self.accounts:
            self.accounts[pan].balance += amount
