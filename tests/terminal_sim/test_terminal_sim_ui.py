"""Interactive mode driven headlessly with textual's pilot, over a real pty."""

from __future__ import annotations

import asyncio

from firmware_bridge.transports import FdTransport
from terminal_sim.flow import CARD, MEMBER, SKIP, Action, Flow
from terminal_sim.keypad import ENTER
from terminal_sim.terminal import TerminalConfig
from terminal_sim.ui import TerminalApp

from .fake_agent import KEY, FakeAgent, FarAgent


def test_flow_sale_with_membership_key() -> None:
    flow = Flow()
    for k in "۱۲۰۰۰۰":
        flow.press(k)
    assert flow.state == "amount"
    assert flow.press(ENTER) is None and flow.state == "identify"
    flow.press(MEMBER)
    for k in "09121234567":
        flow.press(k)
    flow.press(ENTER)
    for k in "1234":
        flow.press(k)
    action = flow.press(ENTER)
    assert action == Action("sale", {"amount": 120000, "phone": "09121234567", "pin": "1234"})
    assert flow.state == "busy"
    flow.ask_otp()
    for k in "4321":
        flow.press(k)
    assert flow.press(ENTER) == "4321"
    flow.done()
    assert flow.state == "idle"


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
    flow.press("5")
    flow.press(ENTER)
    flow.press(CARD)
    assert flow.sale["card"] == flow.card_number and flow.state == "pin"
    flow.reset()
    flow.press("5")
    flow.press(ENTER)
    flow.press(SKIP)
    assert flow.state == "pin" and "phone" not in flow.sale


def test_interactive_sale_headless(far_agent: FarAgent) -> None:
    pty, agent = far_agent(FakeAgent(otp="4321"))

    async def play() -> TerminalApp:
        app = TerminalApp(FdTransport(pty.master), TerminalConfig(mac_key=KEY))
        async with app.run_test(size=(140, 50)) as pilot:
            await pilot.press(*"120000", "enter", "m", *"09121234567", "enter",
                              *"1234", "enter")
            for _ in range(200):
                await pilot.pause(0.05)
                if app.flow.state == "otp":
                    break
            assert app.flow.state == "otp"
            await pilot.press(*"4321", "enter")
            for _ in range(300):
                await pilot.pause(0.05)
                if app.last_sale is not None and app.flow.state == "idle":
                    break
            await pilot.pause(0.2)
            printer = "\n".join(str(line) for line in app.query_one("#printer").lines)
            traffic = "\n".join(str(line) for line in app.query_one("#traffic").lines)
            assert "رسید خرید" in printer and "تخفیف باشگاه" in printer
            assert "-> 0220" in traffic and "<- ACK" in traffic and "<- 0230" in traffic
            await pilot.press("r")
            for _ in range(200):
                await pilot.pause(0.05)
                if app.last_sale.reversed:
                    break
            await pilot.pause(0.2)
            printer = "\n".join(str(line) for line in app.query_one("#printer").lines)
            assert "برگشت خرید" in printer
            assert any(f["t"] == "0420" for f in agent.seen)
            await pilot.press("q")
        return app

    app = asyncio.run(play())
    assert app.last_sale.discount == 10_000 and app.last_sale.otp_asked
