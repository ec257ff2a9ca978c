"""The words of the members' segments (member page, dashboard chart), in Persian and
English (merged into panel.texts.TEXTS, which refuses a key defined twice)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "seg_new": "تازه‌وارد",
        "seg_active": "فعال",
        "seg_loyal": "وفادار",
        "seg_champion": "قهرمان",
        "seg_at_risk": "در خطر رفتن",
        "seg_sleeping": "خواب",
        "seg_lost": "از دست رفته",
        "member_segment": "دسته رفتاری",
        "member_segment_none": "هنوز محاسبه نشده (هر شب محاسبه می‌شود)",
        "member_scores": "امتیازها (۱ تا ۵)",
        "member_scores_text": "ماندگاری {l} · تازگی {r} · دفعات {f} · مبلغ {m} (محاسبه {day})",
        "chart_segments": "اعضا در هر دسته رفتاری",
        "series_segment_now": "اکنون",
        "series_segment_month_ago": "یک ماه پیش",
        "def_chart_segments": "محاسبه شبانه در {day}؛ مقایسه با محاسبه {before}. تغییر: {change}.",
        "def_chart_segments_new": "محاسبه شبانه در {day}؛ محاسبه‌ای از یک ماه پیش هنوز نیست.",
        "def_chart_segments_none": "هنوز محاسبه نشده است (هر شب پس از نیمه‌شب تهران).",
    },
    "en": {
        "seg_new": "New",
        "seg_active": "Active",
        "seg_loyal": "Loyal",
        "seg_champion": "Champion",
        "seg_at_risk": "At risk",
        "seg_sleeping": "Sleeping",
        "seg_lost": "Lost",
        "member_segment": "Segment",
        "member_segment_none": "not computed yet (computed nightly)",
        "member_scores": "Scores (1 to 5)",
        "member_scores_text": "length {l} · recency {r} · frequency {f} · monetary {m} "
                              "(computed {day})",
        "chart_segments": "Members per segment",
        "series_segment_now": "Now",
        "series_segment_month_ago": "A month ago",
        "def_chart_segments": "Nightly run of {day}, against the run of {before}. "
                              "Change: {change}.",
        "def_chart_segments_new": "Nightly run of {day}; no run from a month before yet.",
        "def_chart_segments_none": "Not computed yet (nightly, after midnight Tehran time).",
    },
}
