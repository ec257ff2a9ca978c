"""The campaigns page's words (merged into panel.texts.TEXTS, which refuses a key
defined twice)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "campaigns": "کارزارهای پیامکی", "camp_text": "متن پیامک ({name}، {shop}، {tier})",
        "camp_segment": "بخش مشتریان (مثل at_risk)", "camp_tier": "سطح",
        "camp_before": "آخرین خرید پیش از (روز)", "camp_after": "آخرین خرید از (روز)",
        "camp_min_spend": "کمینه خرید (ریال)", "camp_branch": "شعبه",
        "camp_at": "روز ارسال (خالی: اکنون)", "camp_hour": "ساعت ارسال",
        "camp_holdout": "گروه شاهد (درصد)",
        "camp_price": "بهای هر بخش پیامک (ریال؛ خالی: بهای باشگاه)",
        "camp_estimate": "برآورد", "camp_send": "ثبت و ارسال", "camp_status": "وضعیت",
        "camp_when": "زمان", "camp_filter": "گیرندگان", "camp_sent": "فرستاده",
        "camp_pending": "در صف", "camp_failed": "ناموفق", "camp_cancel": "لغو",
        "camp_reach": "گیرندگان", "camp_held": "گروه شاهد", "camp_parts": "بخش‌های پیامک",
        "camp_cost": "هزینه (ریال)", "no_campaigns": "هنوز کارزاری ثبت نشده است.",
        "new_campaign": "کارزار تازه", "done_camp_added": "کارزار ثبت شد.",
        "done_camp_cancelled": "ارسال‌نشده‌های کارزار لغو شد.",
        "camp_effect": "اثر (خریداران / گیرندگان)", "camp_days": "روز",
    },
    "en": {
        "campaigns": "SMS campaigns", "camp_text": "SMS text ({name}, {shop}, {tier})",
        "camp_segment": "Segment (e.g. at_risk)", "camp_tier": "Tier",
        "camp_before": "Last visit before (day)", "camp_after": "Last visit on or after (day)",
        "camp_min_spend": "Minimum spend (rials)", "camp_branch": "Branch",
        "camp_at": "Day to send (empty: now)", "camp_hour": "Hour to send",
        "camp_holdout": "Hold-out (percent)",
        "camp_price": "Price per SMS part (rials; blank: the club's)",
        "camp_estimate": "Estimate", "camp_send": "Save and send", "camp_status": "Status",
        "camp_when": "When", "camp_filter": "For", "camp_sent": "Sent",
        "camp_pending": "Pending", "camp_failed": "Failed", "camp_cancel": "Cancel",
        "camp_reach": "Reach", "camp_held": "Hold-out", "camp_parts": "SMS parts",
        "camp_cost": "Cost (rials)", "no_campaigns": "No campaigns yet.",
        "new_campaign": "New campaign", "done_camp_added": "The campaign was saved.",
        "done_camp_cancelled": "The campaign's unsent SMS were cancelled.",
        "camp_effect": "Effect (buyers / reached)", "camp_days": "days",
    },
}
