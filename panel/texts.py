"""The panel's words in Persian (what an owner reads) and English (the developers' switch).

One table, so a page never holds a sentence of its own and a test can check that both
languages have every key. Form errors are Persian only (forms.py), as issue 14 asks.
"""

from __future__ import annotations

from panel import (
    texts_accounts,
    texts_campaigns,
    texts_dashboard,
    texts_draws,
    texts_giftcards,
    texts_marketing,
    texts_member,
    texts_segments,
    texts_surveys,
    texts_tiers,
    texts_transfer,
)

LANGUAGES = ("fa", "en")
DIRECTION = {"fa": "rtl", "en": "ltr"}

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "panel": "پنل باشگاه مشتریان",
        "home": "خانه",
        "about": "درباره",
        "health": "وضعیت",
        "login": "ورود",
        "logout": "خروج",
        "user_name": "نام کاربری",
        "password": "گذرواژه",
        "other_language": "English",
        "welcome": "خوش آمدید",
        "role": "نقش",
        "club": "باشگاه",
        "all_clubs": "همه باشگاه‌ها",
        "role_owner": "مالک",
        "role_staff": "کارمند",
        "role_provider": "ارائه‌دهنده",
        "no_users": "هنوز هیچ کاربری تعریف نشده است.",
        "no_users_how": "کاربران با فرمان «loyalty-backend user add» افزوده می‌شوند؛ "
                        "این فرمان همراه لایه ذخیره‌سازی می‌آید.",
        "bad_login": "نام کاربری یا گذرواژه درست نیست.",
        "throttled": "ورودهای نادرست زیاد بود؛ {seconds} ثانیه دیگر دوباره بکوشید.",
        "health_ok": "پنل کار می‌کند.",
        "now": "اکنون",
        "users_store": "کاربران",
        "users_none": "تعریف نشده (لایه ذخیره‌سازی هنوز نیامده است)",
        "users_ready": "آماده",
        "assets": "پرونده‌های پیشانی پنل",
        "package": "بسته",
        "version": "نسخه",
        "licence": "پروانه",
        "files": "پرونده‌ها",
        "checksum": "چکیده SHA-256",
        "libraries": "کتابخانه‌های سرور",
        "assets_note": "همه این پرونده‌ها را خود پنل می‌فرستد؛ هیچ چیز از جای دیگری "
                       "بارگذاری نمی‌شود.",
        "not_found": "این صفحه پیدا نشد.",
        "refused": "درخواست پذیرفته نشد و چیزی تغییر نکرد؛ صفحه را دوباره باز کنید.",
    },
    "en": {
        "panel": "Loyalty club panel",
        "home": "Home",
        "about": "About",
        "health": "Health",
        "login": "Log in",
        "logout": "Log out",
        "user_name": "User name",
        "password": "Password",
        "other_language": "فارسی",
        "welcome": "Welcome",
        "role": "Role",
        "club": "Club",
        "all_clubs": "All clubs",
        "role_owner": "Owner",
        "role_staff": "Staff",
        "role_provider": "Provider",
        "no_users": "No users exist yet.",
        "no_users_how": "Users are added with `loyalty-backend user add`, which comes with "
                        "the store layer.",
        "bad_login": "Wrong user name or password.",
        "throttled": "Too many wrong logins; try again in {seconds} seconds.",
        "health_ok": "The panel is running.",
        "now": "Now",
        "users_store": "Users",
        "users_none": "none (the store layer has not landed yet)",
        "users_ready": "ready",
        "assets": "Front-end files",
        "package": "Package",
        "version": "Version",
        "licence": "Licence",
        "files": "Files",
        "checksum": "SHA-256",
        "libraries": "Server libraries",
        "assets_note": "The panel serves every one of these files itself; nothing is loaded "
                       "from another site.",
        "not_found": "Page not found.",
        "refused": "Request refused; nothing changed. Reload the page.",
    },
}


def _merge(more: dict[str, dict[str, str]]) -> None:
    """A page module's words into the one table; a key defined twice is a mistake."""
    for lang in LANGUAGES:
        twice = TEXTS[lang].keys() & more[lang].keys()
        if twice:
            raise KeyError(f"panel texts defined twice: {sorted(twice)}")
        TEXTS[lang].update(more[lang])


_merge(texts_accounts.TEXTS)
_merge(texts_dashboard.TEXTS)
_merge(texts_segments.TEXTS)
_merge(texts_giftcards.TEXTS)
_merge(texts_surveys.TEXTS)
_merge(texts_campaigns.TEXTS)
_merge(texts_marketing.TEXTS)
_merge(texts_draws.TEXTS)
_merge(texts_member.TEXTS)
_merge(texts_transfer.TEXTS)
_merge(texts_tiers.TEXTS)
