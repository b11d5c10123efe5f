"""Passwords and tokens. No Tornado, no storage: pure functions and one class.

Passwords: argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane); hashes
made by earlier versions (scrypt, N=2^14) still verify and are replaced at the
next successful login (``needs_rehash``). Tokens: HS256 JWTs
with the algorithm pinned on decode and ``exp``/``iat``/``sub``/``type``
required, so an ``alg: none`` token or an access token used as a refresh
token is refused.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from notisync.errors import Unauthorized

ACCESS_TTL = 15 * 60
REFRESH_TTL = 30 * 24 * 3600
_ALGORITHM = "HS256"
# OWASP Password Storage Cheat Sheet, argon2id's first option: m=19 MiB, t=2, p=1.
# About 45 ms a hash on this 2-core machine (scrypt at OWASP's N=2^17 took 0.9 s).
ARGON2 = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}
_argon2 = PasswordHasher(**ARGON2)
_LEGACY_SCRYPT_MAXMEM = 256 * 1024 * 1024  # hashlib's default (32 MiB) refuses N=2^17


def hash_password(password: str) -> str:
    return _argon2.hash(password)


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _argon2.verify(stored, password)
    except (VerificationError, InvalidHashError, ValueError):
        return False


def needs_rehash(stored: str) -> bool:
    """A hash from an older scheme or weaker parameters: replace it while the password is at hand."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _argon2.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


def legacy_scrypt_hash(password: str, n: int = 2**14) -> str:
    """The format earlier versions stored (kept to test their hashes' upgrade)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1, dklen=32, maxmem=_LEGACY_SCRYPT_MAXMEM)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}$8$1${b64(salt)}${b64(digest)}"


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt),
            n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=_LEGACY_SCRYPT_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A fixed hash to verify against when the email is unknown, so a login for an
# unknown account costs the same time as a wrong password.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    """What the store keeps of a refresh token: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    refresh_expires_at: float


@dataclass(frozen=True)
class Claims:
    """What a valid token says: whose it is, which session (sign-in) it belongs to, until when."""

    user_id: str
    session_id: str
    expires_at: int  # unix seconds


class TokenService:
    def __init__(self, secret: str, access_ttl: int = ACCESS_TTL) -> None:
        self._secret = secret
        self.access_ttl = access_ttl

    def issue(self, user_id: str, session_id: str) -> TokenPair:
        now = int(time.time())
        access = self._encode(user_id, session_id, "access", now, self.access_ttl)
        refresh = self._encode(user_id, session_id, "refresh", now, REFRESH_TTL)
        return TokenPair(access, refresh, now + REFRESH_TTL)

    def verify(self, token: str, token_type: str = "access") -> Claims:
        """The claims of a valid token of that type, else 401.

        Whether its session is still going is the session service's
        question (``core/sessions.py``): a signature cannot be revoked.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                options={"require": ["exp", "iat", "sub", "type", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired", code="token_expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("token is invalid", code="invalid_token") from None
        if (claims.get("type") != token_type or not isinstance(claims.get("sub"), str)
                or not isinstance(claims.get("sid"), str)):
            raise Unauthorized("token is invalid", code="invalid_token")
        return Claims(claims["sub"], claims["sid"], int(claims["exp"]))

    def _encode(self, user_id: str, session_id: str, token_type: str, now: int, ttl: int) -> str:
        claims = {
            "sub": user_id,
            "sid": session_id,
            "type": token_type,
            "iat": now,
            "exp": now + ttl,
            # jti makes two tokens issued in the same second differ.
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)


def load_or_create_secret(path: str) -> str:
    """Read the JWT secret, creating it once with mode 0600.

    O_EXCL makes two nodes starting together on one data dir agree on a
    single secret: the loser of the race reads the winner's file.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            with open(path, encoding="ascii") as f:
                secret = f.read().strip()
            if secret:
                return secret
            time.sleep(0.05)
        raise RuntimeError(f"JWT secret file {path} is empty")
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
    return secret
