"""The gift cards page's words (merged into panel.texts.TEXTS, which refuses a key
defined twice)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "giftcards": "کارت‌های هدیه", "gift_batch": "دسته", "gift_value": "مبلغ هر کارت (ریال)",
        "gift_expires": "آخرین روز استفاده", "gift_count": "تعداد کارت",
        "gift_issued": "صادرشده", "gift_sold": "فروخته‌شده", "gift_used": "خرج‌شده",
        "gift_expired": "منقضی‌شده", "gift_outstanding": "مانده", "gift_csv": "فایل چاپ (CSV)",
        "no_giftcards": "هنوز کارت هدیه‌ای صادر نشده است.",
        "issue_giftcards": "صدور دستهٔ کارت هدیه", "done_gift_issued": "دستهٔ کارت هدیه صادر شد.",
        "sell_giftcard": "ثبت فروش کارت هدیه", "gift_number": "شمارهٔ کارت (۱۶ رقم)",
        "done_gift_sold": "فروش کارت ثبت شد.",
        "done_gift_already_sold": "این کارت پیش‌تر فروخته شده بود؛ چیزی تغییر نکرد.",
    },
    "en": {
        "giftcards": "Gift cards", "gift_batch": "Batch", "gift_value": "Value per card (rials)",
        "gift_expires": "Last day of use", "gift_count": "Number of cards",
        "gift_issued": "Issued", "gift_sold": "Sold", "gift_used": "Used",
        "gift_expired": "Expired", "gift_outstanding": "Outstanding",
        "gift_csv": "Print file (CSV)", "no_giftcards": "No gift cards issued yet.",
        "issue_giftcards": "Issue a batch of gift cards",
        "done_gift_issued": "The batch of gift cards was issued.",
        "sell_giftcard": "Record a gift card sale", "gift_number": "Card number (16 digits)",
        "done_gift_sold": "The sale was recorded.",
        "done_gift_already_sold": "This card was sold already; nothing changed.",
    },
}
