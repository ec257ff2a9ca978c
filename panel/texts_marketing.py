"""The automatic messages and marketing settings page's words (merged into
panel.texts.TEXTS, which refuses a key defined twice)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "marketing": "پیام‌های خودکار", "automsgs": "پیام‌های خودکار باشگاه",
        "mk_quiet": "ساعت‌های بی‌پیامک (به وقت تهران، مثل ۲۱:۰۰-۰۹:۰۰)",
        "mk_daily_limit": "سقف پیامک تبلیغاتی در روز (خالی: بی‌سقف)",
        "mk_no_limit": "بی‌سقف", "mk_consent": "رضایت دریافت پیامک تبلیغاتی با عضویت",
        "mk_sms_price": "بهای هر بخش پیامک (ریال، برای برآورد کمپین)",
        "mk_yes": "بله", "mk_no": "خیر", "mk_save": "ذخیرهٔ تنظیمات",
        "am_help": "هر پیام برای هر عضو در هر نوبت یک بار فرستاده می‌شود، فقط به اعضایی که "
                   "رضایت داده‌اند و بیرون از ساعت‌های بی‌پیامک.",
        "am_kind": "پیام", "am_enabled": "روشن/خاموش", "am_template": "متن پیامک",
        "am_details": "تنظیم", "am_on": "روشن", "am_off": "خاموش",
        "am_days": "روز", "am_offset": "جابه‌جایی روز (۱- : روز پیش)",
        "am_segment": "بخش مشتریان (خالی: همه)", "am_gift": "هدیه (ریال)",
        "am_gift_days": "مهلت هدیه (روز)", "am_save": "ذخیره",
        "am_switch_off": "خاموش کن", "am_all": "همه",
        "am_placeholders": "جای‌نگهدارها:",
        "am_kind_birthday": "تولد", "am_kind_anniversary": "سالگرد عضویت",
        "am_kind_winback": "بازگرداندن مشتری (روزها بی‌خرید)",
        "am_kind_tier_up": "ارتقای سطح", "am_kind_expiring": "اعتبار رو به انقضا",
        "am_kind_occasion": "مناسبت",
        "done_mk_settings": "تنظیمات پیامک تبلیغاتی ذخیره شد.",
        "done_mk_saved": "پیام خودکار ذخیره شد.", "done_mk_off": "پیام خودکار خاموش شد.",
    },
    "en": {
        "marketing": "Automatic messages", "automsgs": "The club's automatic messages",
        "mk_quiet": "Quiet hours (Tehran time, e.g. 21:00-09:00)",
        "mk_daily_limit": "Marketing SMS a day at most (empty: no limit)",
        "mk_no_limit": "no limit", "mk_consent": "Enrolling gives marketing consent",
        "mk_sms_price": "Price of one SMS part (rials, for campaign estimates)",
        "mk_yes": "yes", "mk_no": "no", "mk_save": "Save settings",
        "am_help": "Each message goes to a member once per occurrence, only to members who "
                   "gave consent, and outside the quiet hours.",
        "am_kind": "Message", "am_enabled": "On/off", "am_template": "SMS text",
        "am_details": "Settings", "am_on": "on", "am_off": "off",
        "am_days": "Days", "am_offset": "Date offset (-1: the day before)",
        "am_segment": "Segment (empty: all)", "am_gift": "Gift (rials)",
        "am_gift_days": "Gift lasts (days)", "am_save": "Save",
        "am_switch_off": "Switch off", "am_all": "all",
        "am_placeholders": "Placeholders:",
        "am_kind_birthday": "Birthday", "am_kind_anniversary": "Membership anniversary",
        "am_kind_winback": "Win-back (days without a visit)",
        "am_kind_tier_up": "Tier up", "am_kind_expiring": "Credit about to expire",
        "am_kind_occasion": "Occasion",
        "done_mk_settings": "The marketing settings were saved.",
        "done_mk_saved": "The automatic message was saved.",
        "done_mk_off": "The automatic message was switched off.",
    },
}
