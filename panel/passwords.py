"""The panel's password hashing is the backend's (backend/passwords.py): `loyalty-backend
user add` hashes with it and the panel verifies with it, and the backend never imports the
panel, so the one implementation lives below both."""

from backend.passwords import hash_password, needs_rehash, verify_password

__all__ = ["hash_password", "needs_rehash", "verify_password"]
