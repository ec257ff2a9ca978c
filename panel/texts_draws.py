"""The prize draws page's words (merged into panel.texts.TEXTS, which refuses a key
defined twice)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "draws": "قرعه‌کشی‌ها", "no_draws": "هنوز قرعه‌کشی‌ای تعریف نشده است.",
        "draw_name": "نام قرعه‌کشی", "draw_starts": "روز شروع", "draw_ends": "روز پایان",
        "draw_segment": "چه کسانی", "draw_everyone": "همهٔ کسانی که خرید کرده‌اند",
        "draw_rule": "بلیت به ازای", "draw_rule_purchase": "هر خرید",
        "draw_rule_rials": "هر N ریال خرید", "draw_tickets_n": "تعداد بلیت هر خرید یا N ریال",
        "draw_prizes": "تعداد جایزه",
        "draw_commitment": "تعهد منتشرشده (SHA-256، ۶۴ نویسهٔ هگز)",
        "draw_secret": "یا رمز قرعه‌کشی (دست‌کم ۱۶ نویسه؛ ذخیره نمی‌شود)",
        "draw_state": "وضعیت", "draw_state_open": "باز", "draw_state_closed": "بسته (فهرست ثابت)",
        "draw_state_drawn": "انجام‌شده", "draw_period": "دوره", "draw_who": "شرکت‌کنندگان",
        "draw_tickets": "بلیت", "draw_per_purchase": "{n} بلیت برای هر خرید",
        "draw_per_rials": "یک بلیت برای هر {n} ریال", "draw_entries": "شرکت‌کنندگان",
        "draw_tickets_total": "مجموع بلیت‌ها", "draw_csv": "فهرست شرکت‌کنندگان (CSV)",
        "draw_winners": "برندگان", "draw_prize": "جایزه", "draw_member_code": "کد عضویت",
        "draw_phone": "همراه", "draw_revealed": "رمز آشکارشده",
        "new_draw": "تعریف قرعه‌کشی", "draw_add": "ثبت قرعه‌کشی",
        "draw_close": "بستن و ثابت کردن فهرست", "draw_run": "آشکار کردن رمز و قرعه‌کشی",
        "draw_close_later": "پس از پایان دوره می‌توان فهرست را بست.",
        "draw_verify_hint": "هر کس با رمز آشکارشده و این فایل می‌تواند با «loyalty-backend "
                            "draw verify» همین برندگان را به دست آورد.",
        "draw_commitment_hint": "این تعهد را پیش از پایان دوره منتشر کنید؛ رمز را تا روز "
                                "قرعه‌کشی نزد خود نگه دارید.",
        "done_draw_added": "قرعه‌کشی ثبت شد؛ تعهد آن را منتشر کنید.",
        "done_draw_closed": "فهرست شرکت‌کنندگان ثابت شد.",
        "done_draw_drawn": "قرعه‌کشی انجام شد و به برندگان پیامک می‌رود.",
    },
    "en": {
        "draws": "Prize draws", "no_draws": "No prize draw defined yet.",
        "draw_name": "Draw name", "draw_starts": "First day", "draw_ends": "Last day",
        "draw_segment": "Who takes part", "draw_everyone": "Everyone who bought",
        "draw_rule": "Tickets per", "draw_rule_purchase": "purchase",
        "draw_rule_rials": "N rials spent", "draw_tickets_n": "Tickets per purchase, or N rials",
        "draw_prizes": "Number of prizes",
        "draw_commitment": "Published commitment (SHA-256, 64 hex characters)",
        "draw_secret": "Or the draw's secret (16+ characters; not stored)",
        "draw_state": "State", "draw_state_open": "Open",
        "draw_state_closed": "Closed (list frozen)", "draw_state_drawn": "Drawn",
        "draw_period": "Period", "draw_who": "Taking part",
        "draw_tickets": "Tickets", "draw_per_purchase": "{n} tickets per purchase",
        "draw_per_rials": "one ticket per {n} rials", "draw_entries": "Entries",
        "draw_tickets_total": "Tickets in all", "draw_csv": "Entries (CSV)",
        "draw_winners": "Winners", "draw_prize": "Prize", "draw_member_code": "Member code",
        "draw_phone": "Phone", "draw_revealed": "Revealed secret",
        "new_draw": "Define a prize draw", "draw_add": "Save the draw",
        "draw_close": "Close and freeze the entries", "draw_run": "Reveal the secret and draw",
        "draw_close_later": "The entries can be frozen once the period is over.",
        "draw_verify_hint": "Anyone with the revealed secret and this file gets the same "
                            "winners with “loyalty-backend draw verify”.",
        "draw_commitment_hint": "Publish this commitment before the period ends; keep the "
                                "secret to yourself until the draw.",
        "done_draw_added": "The draw was saved; publish its commitment.",
        "done_draw_closed": "The entries are frozen.",
        "done_draw_drawn": "The draw was made; the winners are sent an SMS.",
    },
}
