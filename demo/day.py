"""A shop's day, as data: who comes in, what they buy, how they pay.

Kept apart from the code that plays it so the story can be read (and changed) at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKEND_CONFIG = """
[shop]
name = "سوپرمارکت نمونه"

[program]
welcome_credit = 50000
referral_bonus = 20000

[otp]
threshold = 60000

[service]
sweep_seconds = 1  # the daily automatic messages go within a second of being switched on
"""

GOOD_CARD = "6037991234567891"
POOR_CARD = "6104337654321098"
LOYALTY_CARD = "6037701234567896"


@dataclass(frozen=True)
class Visit:
    """One customer at the till. `enroll` first presses the membership key to join."""

    who: str
    amount: int
    phone: str | None = None
    enroll: bool = False
    referrer: str | None = None
    pan: str = GOOD_CARD
    pin: str = "1234"
    card: str | None = None
    give_card: str | None = None
    #: the shop issues a batch of gift cards of this value and sells the customer one
    buy_gift_card: int = 0
    #: pays with the gift card bought earlier (its 16 digits typed as the card, CN)
    pay_with_gift_card: bool = False
    reverse: bool = False
    note: str = ""


MORNING = [
    Visit("Sara", 0, phone="۰۹۱۲۳۴۵۶۷۸۹", enroll=True,
          note="joins with the membership key, typing Persian digits"),
    Visit("Reza", 0, phone="09351234567", enroll=True, referrer="09123456789",
          note="joins, referred by Sara"),
    Visit("Sara", 1_800_000, phone="09123456789",
          note="first purchase: the welcome credit comes off the bill"),
    Visit("Reza", 950_000, phone="+989351234567", note="earns cash-back"),
    Visit("Reza", 0, phone="09351234567", give_card=LOYALTY_CARD,
          note="the shop gives him a loyalty card (operator command)"),
    Visit("Reza", 380_000, card=LOYALTY_CARD, note="swipes his loyalty card instead"),
    Visit("walk-in", 420_000, note="no membership: a plain card payment"),
    Visit("Nima", 0, buy_gift_card=500_000,
          note="buys a 500,000-rial gift card at the counter for a friend's birthday"),
    Visit("Nima's friend", 800_000, pay_with_gift_card=True,
          note="pays with the gift card: its balance comes off, the bank card pays the rest"),
    Visit("Reza", 2_500_000, phone="09351234567", pan=POOR_CARD,
          note="card declined: insufficient funds"),
    Visit("Reza", 640_000, phone="09351234567", reverse=True,
          note="buys, then returns the goods: the purchase is reversed"),
    Visit("Sara", 21_500_000, phone="09123456789",
          note="returning customer: her credit comes off the bill (one-time code by SMS); "
               "this big purchase lifts her to the silver tier"),
]

AFTERNOON_OFFLINE = [
    Visit("Maryam", 0, phone="09131112233", enroll=True,
          note="joins while the backend is still up"),
]

BACKEND_DOWN = [
    Visit("Maryam", 1_250_000, phone="09131112233",
          note="backend down: full amount charged, the purchase journaled by the agent"),
    Visit("Reza", 700_000, phone="09351234567", note="backend down: journaled too"),
]

EVENING = [
    Visit("Maryam", 900_000, phone="09131112233",
          note="after the restart: the journaled credit is there"),
]
