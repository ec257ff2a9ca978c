"""The form layer (errors in Persian, beside their field) and the vendored assets' manifest."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from panel import forms
from panel.assets import VENDOR, load_manifest, mismatches

FIELDS = (
    forms.Field("name", "user_name", forms.text, max_length=10),
    forms.Field("phone", "phone", forms.phone),
    forms.Field("amount", "amount", forms.integer(1, 1_000_000)),
    forms.Field("birthday", "birthday", forms.jalali_date, required=False),
)


def test_good_input_parses_persian_digits() -> None:
    form = forms.bind(FIELDS, {"name": " علی ", "phone": "۰۹۱۲ ۱۲۳ ۴۵۶۷",
                               "amount": "۵۰٬۰۰۰", "birthday": "۱۳۷۰/۰۱/۰۱"})
    assert form.ok
    assert form.values == {"name": "علی", "phone": "09121234567", "amount": 50000,
                           "birthday": date(1991, 3, 21)}


def test_bad_input_keeps_what_was_typed_and_an_error_per_field() -> None:
    typed = {"name": "<script>alert(1)</script>", "phone": "123", "amount": "۰",
             "birthday": "۱۴۰۴/۱۲/۳۰"}
    form = forms.bind(FIELDS, typed)
    assert not form.ok and form.values == {}
    assert form.raw == typed
    assert set(form.errors) == {"name", "phone", "amount", "birthday"}
    assert form.errors["amount"] == "عدد باید از ۱ تا ۱۰۰۰۰۰۰ باشد."
    assert form.errors["birthday"] == "چنین روزی در تقویم نیست."
    assert "شماره همراه" in form.errors["phone"]
    assert form.errors["name"] == "بیش از ۱۰ نویسه نوشته شده است."


def test_required_missing_and_optional_empty() -> None:
    form = forms.bind(FIELDS, {"name": "x"})
    assert form.errors["phone"] == "این خانه را پر کنید." and "birthday" not in form.errors
    assert forms.bind(FIELDS[3:], {"birthday": ""}).values == {"birthday": None}
    assert forms.bind(FIELDS[:1], {"name": "a\x00b"}).errors["name"]


def test_the_committed_vendor_files_match_the_manifest() -> None:
    assets = load_manifest()
    assert {a.package for a in assets} == {"htmx.org", "vazirmatn"}
    assert all(a.version and a.license and a.files for a in assets)
    assert mismatches(assets) == []


def test_a_changed_or_stray_file_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR, copy)
    (copy / "htmx.min.js").write_bytes(b"alert('changed')")
    (copy / "extra.js").write_text("x")
    (copy / "Vazirmatn-Bold.woff2").unlink()
    problems = mismatches(load_manifest(copy / "ASSETS.json"), copy)
    assert sorted(problems) == ["Vazirmatn-Bold.woff2: missing", "extra.js: not in the manifest",
                                "htmx.min.js: SHA-256 differs from the manifest"]


def test_every_outbox_kind_has_a_label_in_both_languages() -> None:
    """The SMS page names each kind; a kind added to the outbox without a label would
    break the page."""
    from backend.sms.outbox import KINDS
    from panel.texts import TEXTS

    for lang, texts in TEXTS.items():
        missing = [k for k in KINDS if f"sms_kind_{k}" not in texts]
        assert not missing, (lang, missing)
