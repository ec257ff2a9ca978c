"""Who may do what in the panel: roles and the permission table.

The table is data so that a page asks `allowed(role, Permission.X)` and a test can print
the whole matrix; there is no `if role == ...` scattered through the pages.
"""

from __future__ import annotations

from enum import StrEnum

from protocols.identity import mask_phone


class Role(StrEnum):
    OWNER = "owner"
    STAFF = "staff"
    PROVIDER = "provider"


class Permission(StrEnum):
    VIEW_DASHBOARD = "view_dashboard"
    LOOK_UP_MEMBERS = "look_up_members"
    ENROL_MEMBERS = "enrol_members"
    LINK_CARDS = "link_cards"
    SEE_FULL_PHONES = "see_full_phones"
    ADJUST_CREDIT = "adjust_credit"
    EDIT_MEMBERS = "edit_members"
    MANAGE_OFFERS = "manage_offers"
    EDIT_PROGRAM = "edit_program"
    VIEW_TERMINALS = "view_terminals"
    VIEW_SMS = "view_sms"
    RETRY_SMS = "retry_sms"
    READ_AUDIT_LOG = "read_audit_log"
    MANAGE_USERS = "manage_users"
    ALL_CLUBS = "all_clubs"


_STAFF = frozenset({
    Permission.VIEW_DASHBOARD,
    Permission.LOOK_UP_MEMBERS,
    Permission.ENROL_MEMBERS,
    Permission.LINK_CARDS,
})
_OWNER = _STAFF | frozenset(Permission) - {Permission.ALL_CLUBS}

#: Issue 14 "Who may do what": a provider sees and manages every club; an owner only
#: their club; staff may look members up, enrol and link cards, nothing more.
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.PROVIDER: frozenset(Permission),
    Role.OWNER: _OWNER,
    Role.STAFF: _STAFF,
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def shown_phone(role: Role, phone: str) -> str:
    """A member's phone as this role may see it: masked for staff, as in the logs."""
    return phone if allowed(role, Permission.SEE_FULL_PHONES) else mask_phone(phone)
