"""The words of a member's tier history on the member's page (merged into
panel.texts.TEXTS, which refuses a key defined twice). Every key starts with `tier_hist`."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "tier_hist": "تاریخچهٔ سطح", "tier_hist_none": "سطح این عضو هنوز تغییر نکرده است.",
        "tier_hist_day": "تاریخ", "tier_hist_from": "از سطح", "tier_hist_to": "به سطح",
        "tier_hist_cause": "علت", "tier_hist_up": "ارتقا", "tier_hist_down": "کاهش",
        "tier_hist_purchase": "خرید", "tier_hist_reversal": "برگشت خرید",
        "tier_hist_adjust": "اصلاح دستی", "tier_hist_program": "تغییر برنامه",
    },
    "en": {
        "tier_hist": "Tier history", "tier_hist_none": "This member's tier has not changed yet.",
        "tier_hist_day": "Date", "tier_hist_from": "From", "tier_hist_to": "To",
        "tier_hist_cause": "Cause", "tier_hist_up": "up", "tier_hist_down": "down",
        "tier_hist_purchase": "purchase", "tier_hist_reversal": "reversal",
        "tier_hist_adjust": "manual adjustment", "tier_hist_program": "program change",
    },
}
