"""The surveys page's words (merged into panel.texts.TEXTS)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "surveys": "نظرسنجی‌ها", "survey_low_today": "امتیازهای پایین امروز",
        "survey_week": "هفته (از شنبه)", "survey_branch": "شعبه", "survey_terminal": "پایانه",
        "survey_count": "پاسخ", "survey_average": "میانگین امتیاز",
        "survey_rating": "امتیاز", "survey_comment": "توضیح", "survey_when": "زمان",
        "survey_comments": "توضیح‌ها", "no_surveys": "هنوز پاسخی نرسیده است.",
        "survey_csv": "دریافت فایل (CSV)",
    },
    "en": {
        "surveys": "Surveys", "survey_low_today": "Low ratings today",
        "survey_week": "Week (from Saturday)", "survey_branch": "Branch",
        "survey_terminal": "Terminal", "survey_count": "Answers",
        "survey_average": "Average rating", "survey_rating": "Rating",
        "survey_comment": "Comment", "survey_when": "When", "survey_comments": "Comments",
        "no_surveys": "No answers yet.", "survey_csv": "Download (CSV)",
    },
}
