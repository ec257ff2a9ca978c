"""Interactive mode: the terminal on screen (textual). Keypad, membership key, card,
customer display, printer and the link traffic with frames decoded and ACK/NAK.

Everything that touches the line runs in worker threads; they report through a queue
the UI drains on a timer, so a slow line never freezes the screen and shutdown never
waits on the UI loop.
"""

from __future__ import annotations

import queue
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Footer, Header, RichLog, Static

from protocols.persian import persian_digits
from terminal_sim.flow import CANCEL, CARD, MEMBER, SKIP, Action, Flow
from terminal_sim.keypad import BACK, ENTER, KEYS
from terminal_sim.session import Session
from terminal_sim.terminal import TerminalConfig

KEYPAD = ["1", "2", "3", "4", "5", "6", "7", "8", "9", BACK, "0", ENTER]
LABELS = {BACK: "⌫", ENTER: "تایید", MEMBER: "باشگاه", CARD: "کارت", SKIP: "رد",
          CANCEL: "لغو"}


def _key_button(label: str, key: str) -> Button:
    """Keys are clicked or typed, never focused: ENTER must reach the keypad, not a button."""
    button = Button(label, id=f"k_{key}", name=key)
    button.can_focus = False
    return button


class TerminalApp(App[None]):
    """A simulated POS terminal on one line (a Transport)."""

    TITLE = "loyalty-sim"
    CSS = """
    #left { width: 44; }
    #display { height: 6; border: round green; content-align: center middle; }
    #prompt { height: 1; }
    #entry { height: 3; border: round white; }
    #keys { grid-size: 3; grid-gutter: 0; height: 16; }
    #keys Button { width: 100%; min-width: 6; }
    #extra { height: 3; }
    #extra Button { min-width: 8; }
    #printer { border: round yellow; height: 1fr; }
    #traffic { border: round cyan; height: 1fr; }
    """
    BINDINGS: ClassVar = [
        ("m", "press('MEMBER')", "membership key"),
        ("c", "press('CARD')", "swipe card"),
        ("s", "press('SKIP')", "skip"),
        ("escape", "press('CANCEL')", "cancel"),
        ("r", "reverse", "reverse last"),
        ("e", "echo", "echo"),
        ("q", "quit", "quit"),
    ]

    def __init__(self, transport: Any, config: TerminalConfig | None = None,
                 sign_on: bool = True) -> None:
        super().__init__()
        self.flow = Flow()
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.otp_answers: queue.Queue[str | None] = queue.Queue()
        self.session = Session(transport, config or TerminalConfig(),
                               on_traffic=lambda d, t: self.events.put(("traffic", f"{d} {t}")),
                               on_event=lambda k, t: self.events.put((k, t)))
        self.session.terminal.printer.on_print = lambda r: self.events.put(("print", r.text))
        self.last_sale: Any = None
        self.quote: Any = None
        #: Every line written to the link pane, whole (the pane wraps them).
        self.link_lines: list[str] = []
        self._sign_on = sign_on

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield Static("", id="display", markup=False)
                yield Static(self.flow.prompt, id="prompt", markup=False)
                yield Static("", id="entry", markup=False)
                with Grid(id="keys"):
                    for key in KEYPAD:
                        yield _key_button(LABELS.get(key, persian_digits(key)), key)
                with Horizontal(id="extra"):
                    for key in (MEMBER, CARD, SKIP, CANCEL):
                        yield _key_button(LABELS[key], key)
            with Vertical():
                # wrap: a decoded frame is longer than the pane, and must be read whole
                yield RichLog(id="printer", wrap=True, min_width=20)
                yield RichLog(id="traffic", wrap=True, min_width=20)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#printer", RichLog).border_title = "printer"
        self.query_one("#traffic", RichLog).border_title = "link"
        self.query_one("#display", Static).border_title = "customer display"
        self.session.start()
        self._drain_timer = self.set_interval(0.05, self._drain)
        if self._sign_on:
            self.run_worker(self._network("001"), thread=True, group="line")

    def on_unmount(self) -> None:
        self._drain_timer.stop()
        self.otp_answers.put(None)
        self.session.stop()

    # --- input ------------------------------------------------------------------------
    def on_key(self, event: Any) -> None:
        ch = event.character or ""
        if event.key == "enter":
            self.action_press(ENTER)
        elif event.key == "backspace":
            self.action_press(BACK)
        elif ch and ch in KEYS and len(ch) == 1:
            self.action_press(ch)
        else:
            return
        event.stop()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.name:
            self.action_press(event.button.name)

    def action_press(self, key: str) -> None:
        if key == CANCEL and self.quote is not None and self.flow.state in ("swipe", "pin"):
            quote, self.quote = self.quote, None  # give the quote back: its hold ends now
            self.run_worker(lambda: self.session.terminal.cancel(quote), thread=True,
                            group="line")
        result = self.flow.press(key)
        if isinstance(result, Action):
            self.run_worker(lambda: self._run(result), thread=True, group="line")
        elif isinstance(result, str):
            self.otp_answers.put(result)
        self._refresh()

    def action_reverse(self) -> None:
        """Reverse the last sale, from the idle screen; the terminal refuses (and says why
        on the display) a sale that was declined or is already reversed."""
        if self.flow.state != "idle":
            return
        sale = self.last_sale
        if sale is None:
            self.flow.show("خریدی برای برگشت نیست")
            self._refresh()
            return
        self.run_worker(lambda: self.session.terminal.reverse(sale), thread=True,
                        group="line")

    def action_echo(self) -> None:
        self.run_worker(self._network("301"), thread=True, group="line")

    # --- work on the line (worker threads) --------------------------------------------
    def _network(self, code: str) -> Any:
        def work() -> None:
            ex = self.session.terminal.network(code)
            r = ex.response
            text = "no answer" if r is None else f"39={r.code} ST={r.status} QD={r.queued}"
            self.events.put(("log", f"0800 {code}: {text}"))
        return work

    def _otp(self) -> str | None:
        self.events.put(("ask_otp", ""))
        try:
            return self.otp_answers.get(timeout=120)
        except queue.Empty:
            return None

    def _run(self, action: Action) -> None:
        t, p = self.session.terminal, action.params
        after = "done"
        try:
            if action.kind == "enroll":
                t.enroll(p["phone"])
            elif action.kind == "quote":
                self.quote = t.quote(p["amount"], phone=p.get("phone"), card=p.get("card"),
                                     otp_provider=self._otp)
                after = "quoted"
            elif action.kind == "pay":
                quote, self.quote = self.quote, None
                self.last_sale = t.pay(quote, p["pan"], p["pin"])
        except Exception as exc:  # shown, not fatal: the cashier starts over
            self.events.put(("log", f"error: {exc}"))
            after = "done"
        self.events.put((after, ""))

    # --- output -----------------------------------------------------------------------
    def _link(self, text: str) -> None:
        self.link_lines.append(text)
        self.query_one("#traffic", RichLog).write(text)

    def _drain(self) -> None:
        printer = self.query_one("#printer", RichLog)
        changed = False
        while True:
            try:
                kind, text = self.events.get_nowait()
            except queue.Empty:
                break
            changed = True
            if kind == "traffic":
                self._link(text)
            elif kind == "print":
                printer.write(text + "\n")
            elif kind == "display":
                self.flow.show(text)
            elif kind == "ask_otp":
                self.flow.ask_otp()
            elif kind == "quoted":
                self.flow.quoted()
            elif kind == "done":
                self.flow.done()
            else:
                self._link(f"-- {text}")
        if changed:
            self._refresh()

    def _refresh(self) -> None:
        self.query_one("#display", Static).update(self.flow.display)
        self.query_one("#prompt", Static).update(self.flow.prompt)
        self.query_one("#entry", Static).update(self.flow.entry)
