"""The words of the member's credit transfer form (merged into panel.texts.TEXTS, which
refuses a key defined twice). Its errors are Persian only (panel.pages.member_transfer)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fa": {
        "self_transfer_rules": "از {low} تا {high} ریال در هر انتقال، تا {day} ریال در روز؛ "
                               "اگر گیرنده عضو نباشد عضو می‌شود.",
        "self_transfer_phone": "شماره همراه گیرنده",
        "self_transfer_amount": "مبلغ (ریال)",
        "self_transfer_send_code": "فرستادن کد تأیید",
        "self_transfer_what": "انتقال {amount} ریال به {phone}",
        "self_transfer_code_sent": "کد تأیید به شماره شما پیامک شد؛ تا {seconds} ثانیه "
                                   "آن را بنویسید.",
        "self_transfer_code": "کد تأیید",
        "self_transfer_confirm": "تأیید انتقال",
        "self_transfer_done": "{amount} ریال اعتبار منتقل شد.",
        "self_transfer_back": "بازگشت به صفحه شما",
    },
    "en": {
        "self_transfer_rules": "{low} to {high} rials a transfer, at most {day} rials a day; "
                               "a receiver who is not a member becomes one.",
        "self_transfer_phone": "Receiver's mobile",
        "self_transfer_amount": "Amount (rials)",
        "self_transfer_send_code": "Send the code",
        "self_transfer_what": "Transfer {amount} rials to {phone}",
        "self_transfer_code_sent": "A code was sent to your phone by SMS; type it within "
                                   "{seconds} seconds.",
        "self_transfer_code": "Code",
        "self_transfer_confirm": "Confirm the transfer",
        "self_transfer_done": "{amount} rials of credit transferred.",
        "self_transfer_back": "Back to your page",
    },
}
