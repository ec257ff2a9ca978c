"""Interactive mode driven headlessly with textual's pilot, over a real pty."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from firmware_bridge.driver import LinkDriver
from firmware_bridge.transports import FdTransport, SerialTransport, open_pty
from terminal_sim.flow import CANCEL, CARD, MEMBER, SKIP, Action, Flow
from terminal_sim.keypad import ENTER
from terminal_sim.terminal import TerminalConfig
from terminal_sim.ui import TerminalApp

from .fake_agent import KEY, FakeAgent

NOT_MEMBER_PHONE = "09350000000"  # the fake agent answers its inquiries 14


def test_flow_sale_with_membership_key() -> None:
    flow = Flow()
    for k in "۱۲۰۰۰۰":
        flow.press(k)
    assert flow.state == "amount" and flow.entry == "۱۲۰٬۰۰۰"
    assert flow.press(ENTER) is None and flow.state == "identify"
    assert flow.display == "مبلغ: ۱۲۰٬۰۰۰ ریال"
    flow.press(MEMBER)
    for k in "09121234567":
        flow.press(k)
    # the club is asked first: discount and net are shown before the bank card
    assert flow.press(ENTER) == Action("quote", {"amount": 120000, "phone": "09121234567"})
    assert flow.state == "busy"
    flow.ask_otp()
    for k in "4321":
        flow.press(k)
    assert flow.press(ENTER) == "4321"
    flow.quoted()
    assert flow.state == "swipe"
    flow.press(CARD)
    for k in "1234":
        flow.press(k)
    assert flow.entry == "****"
    assert flow.press(ENTER) == Action("pay", {"pan": flow.bank_card, "pin": "1234"})
    flow.show("تراکنش موفق")
    flow.done()
    assert flow.state == "idle" and flow.display == "تراکنش موفق"
    flow.press("5")  # the next customer: the last one's display is cleared
    assert flow.display == "" and flow.entry == "۵"


def test_flow_card_skip_enrol_and_bad_amount() -> None:
    flow = Flow()
    flow.press(MEMBER)
    for k in "۰۹۱۲۱۲۳۴۵۶۷":
        flow.press(k)
    assert flow.press(ENTER) == Action("enroll", {"phone": "۰۹۱۲۱۲۳۴۵۶۷"})
    flow.done()
    flow.press("0")
    flow.press(ENTER)
    assert flow.state == "amount" and flow.error  # zero is not an amount
    flow.press(CLEAR_KEY)
    flow.press("5")
    flow.press(ENTER)
    assert flow.press(CARD) == Action("quote", {"amount": 5, "card": flow.card_number})
    flow.reset()
    flow.press("5")
    flow.press(ENTER)
    assert flow.press(SKIP) == Action("quote", {"amount": 5})
    assert flow.press(CANCEL) is None and flow.state == "busy"  # the line finishes first
    flow.quoted()
    assert flow.press(ENTER) is None and flow.state == "pin"  # Enter swipes the card too
    flow.press(CANCEL)
    assert flow.state == "idle" and flow.sale == {}
    flow.ask_otp()
    assert flow.press(CANCEL) == ""  # no one-time code: the quote goes on without it


CLEAR_KEY = "CLEAR"


# --- headless UI over a real pty --------------------------------------------------------
def play(agent: FakeAgent, script: Callable[[TerminalApp, Pilot], Awaitable[None]],
         ) -> TerminalApp:
    """Runs the app on one end of a pty, the fake agent on the other, and the script."""
    pty = open_pty()

    def answer(message: bytes, driver: LinkDriver) -> None:
        raw = agent.exchange(message, "", "", 0)
        if raw is not None:
            driver.send(raw)

    far = LinkDriver(SerialTransport(pty.path), answer, name="far").start()

    async def run() -> TerminalApp:
        app = TerminalApp(FdTransport(pty.master), TerminalConfig(mac_key=KEY))
        async with app.run_test(size=(140, 50)) as pilot:
            await until(pilot, lambda: any(f["t"] == "0800" for f in agent.seen), "sign-on")
            await script(app, pilot)
            await pilot.press("q")
        return app

    try:
        return asyncio.run(run())
    finally:
        far.stop()
        pty.close()


async def until(pilot: Pilot, cond: Callable[[], Any], what: str) -> None:
    for _ in range(300):
        if cond():
            await pilot.pause()  # let the screen catch up with the state
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def shown(app: TerminalApp, widget: str) -> str:
    return str(app.query_one(widget, Static).content)


def pane(app: TerminalApp, widget: str) -> list[str]:
    return [getattr(line, "text", line) for line in app.query_one(widget).lines]


def sent(agent: FakeAgent, mti: str) -> int:
    return sum(1 for f in agent.seen if f["t"] == mti)


async def sell(app: TerminalApp, pilot: Pilot, amount: str, phone: str | None, pin: str,
               ) -> None:
    """Amount, membership key and phone (or skip), then the card and PIN once quoted."""
    await pilot.press(*amount, "enter")
    if phone:
        await pilot.press("m", *phone, "enter")
    else:
        await pilot.press("s")
    await until(pilot, lambda: app.flow.state == "swipe", "the quote")
    before = app.last_sale
    await pilot.press("c", *pin, "enter")
    await until(pilot, lambda: app.last_sale is not before and app.flow.state == "idle",
                "the sale")


def test_interactive_sale_headless() -> None:
    agent = FakeAgent(otp="4321")

    async def script(app: TerminalApp, pilot: Pilot) -> None:
        await pilot.press(*"1200000")
        assert shown(app, "#entry") == "۱٬۲۰۰٬۰۰۰"  # grouped while typing
        await pilot.press("enter")
        assert shown(app, "#display") == "مبلغ: ۱٬۲۰۰٬۰۰۰ ریال"  # ... and after Enter
        await pilot.press("m", *"09121234567", "enter")
        await until(pilot, lambda: app.flow.state == "otp", "the one-time code prompt")
        await pilot.press(*"4321", "enter")
        await until(pilot, lambda: app.flow.state == "swipe", "the quote")
        # the customer sees the discount and the net before the card and PIN are asked
        display = shown(app, "#display")
        assert "تخفیف باشگاه: ۱۰٬۰۰۰ ریال" in display, display
        assert "مبلغ قابل پرداخت: ۱٬۱۹۰٬۰۰۰ ریال" in display, display
        assert app.flow.prompt == "کارت بانکی را بکشید"
        assert sent(agent, "0100") == 2 and sent(agent, "0220") == 0
        assert app.session.terminal.bank.accounts == {}  # no card charged yet
        await pilot.press("c")
        assert app.flow.state == "pin"
        await pilot.press(*"1234", "enter")
        await until(pilot, lambda: app.last_sale is not None and app.flow.state == "idle",
                    "the sale")
        await until(pilot, lambda: "تراکنش موفق" in shown(app, "#display"), "the result")
        printer = "\n".join(pane(app, "#printer"))
        assert "رسید خرید" in printer and "تخفیف باشگاه" in printer
        traffic = "\n".join(pane(app, "#traffic"))
        assert "-> 0220" in traffic and "<- ACK" in traffic and "<- 0230" in traffic
        await pilot.press("r")
        await until(pilot, lambda: app.last_sale.reversed
                    and "برگشت خرید" in "\n".join(pane(app, "#printer")), "the reversal")
        assert sent(agent, "0420") == 1
        await until(pilot, lambda: "خرید برگشت خورد" in shown(app, "#display"), "display")
        await pilot.press("r")  # twice: refused, nothing sent
        await until(pilot, lambda: "قبلا برگشت" in shown(app, "#display"), "the refusal")
        assert sent(agent, "0420") == 1
        # the next customer starts with a clear display
        await pilot.press("5")
        assert shown(app, "#display") == "" and shown(app, "#entry") == "۵"
        # the link pane wraps long lines: every row fits, nothing is cut
        log = app.query_one("#traffic")
        width = log.scrollable_content_region.width
        rows = pane(app, "#traffic")
        assert all(len(row.rstrip()) <= width for row in rows), width
        long = [line for line in app.link_lines if len(line) > width]
        assert long, "no line longer than the pane to check the wrapping with"
        flat = "".join("".join(rows).split())
        assert all("".join(line.split()) in flat for line in long)

    app = play(agent, script)
    assert app.last_sale.discount == 10_000 and app.last_sale.otp_asked


def test_declined_sale_says_why_in_persian_and_cannot_be_reversed() -> None:
    agent = FakeAgent()

    async def script(app: TerminalApp, pilot: Pilot) -> None:
        await sell(app, pilot, "500000", "09121234567", "9999")
        await until(pilot, lambda: shown(app, "#display").startswith("رد شد"), "the decline")
        assert shown(app, "#display") == "رد شد: رمز اشتباه"
        assert not app.last_sale.approved
        printed = len(app.session.terminal.printer.receipts)
        await pilot.press("r")
        await until(pilot, lambda: "برگشت ممکن نیست" in shown(app, "#display"), "the refusal")
        assert "پرداخت نشده" in shown(app, "#display") and "رمز اشتباه" in shown(app, "#display")
        assert sent(agent, "0420") == 0 and not app.last_sale.reversed
        assert len(app.session.terminal.printer.receipts) == printed  # no return receipt

    play(agent, script)


def test_not_a_member_is_told_how_to_join() -> None:
    agent = FakeAgent()

    async def script(app: TerminalApp, pilot: Pilot) -> None:
        await pilot.press(*"300000", "enter", "m", *NOT_MEMBER_PHONE, "enter")
        await until(pilot, lambda: app.flow.state == "swipe", "the quote")
        display = shown(app, "#display")
        assert "این شماره عضو باشگاه نیست" in display and "کلید «باشگاه»" in display
        assert "صفحه اول" in display and "مبلغ قابل پرداخت: ۳۰۰٬۰۰۰ ریال" in display
        await pilot.press("c", *"1234", "enter")
        await until(pilot, lambda: app.last_sale is not None and app.flow.state == "idle",
                    "the sale")
        await until(pilot, lambda: "تراکنش موفق" in shown(app, "#display"), "the result")
        assert "عضو باشگاه نیست" in shown(app, "#display")
        receipt = app.last_sale.receipt.text
        assert "عضو باشگاه نیست" in receipt and "تخفیف" not in receipt
        assert sent(agent, "0220") == 0  # nothing for the club to record

    play(agent, script)


def test_membership_key_at_idle_enrols() -> None:
    agent = FakeAgent()

    async def script(app: TerminalApp, pilot: Pilot) -> None:
        await pilot.press("m", *"۰۹۱۲۱۲۳۴۵۶۷", "enter")
        await until(pilot, lambda: "عضویت باشگاه مشتریان" in "\n".join(pane(app, "#printer")),
                    "the enrolment receipt")
        assert shown(app, "#display") == "خوش آمدید"
        assert [f["3"] for f in agent.seen if f["t"] == "0100"] == ["900000"]  # enrolment
        await until(pilot, lambda: app.flow.state == "idle", "idle")

    play(agent, script)
