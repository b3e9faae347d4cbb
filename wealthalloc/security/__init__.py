"""Credentials: password hashing now; tokens, MFA and API keys build on it."""

from wealthalloc.security.passwords import hash_password, verify_password

__all__ = ["hash_password", "verify_password"]
