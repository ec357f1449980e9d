"""Password hashing (Argon2id) and the policy people's passwords must meet."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import lazy_gettext as _l

MIN_LENGTH = 8
MAX_LENGTH = 128
# The 10,000 most common passwords of zxcvbn's list (taken from real leaks).
COMMON_PASSWORDS_CHECKED = 10_000

# OWASP's minimum for Argon2id: 19 MiB of memory, two passes, one lane.
hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"][:COMMON_PASSWORDS_CHECKED])


def password_problem(password: str, *, email: str = "", display_name: str = "") -> str | None:
    """Why this password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return _l("Use at least %(n)d characters.", n=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        return _l("Use at most %(n)d characters.", n=MAX_LENGTH)
    lowered = password.lower()
    if lowered in _common_passwords():
        return _l("This is one of the most common passwords; choose one that is harder to guess.")
    personal = {email.lower(), email.split("@")[0].lower(), display_name.lower()} - {""}
    if lowered in personal:
        return _l("Do not use your email address or name as your password.")
    if _guessability(password, [*personal, *email.replace("@", ".").split(".")]) < MIN_SCORE:
        return _l(
            "This password would be easy to guess (it is built from common words, "
            "patterns, this site's words or your own details). Try a few unrelated words."
        )
    return None


RATED_LENGTH = 72  # zxcvbn's own limit

# zxcvbn's scale: 3 is "safely unguessable: moderate protection from offline attacks".
MIN_SCORE = 3
# Words an attacker guessing passwords on this site tries first.
SITE_WORDS = (
    "counterfund",
    "solidarity",
    "solidarity forever",
    "solidarityforever",
    "solidarity-forever",
    "strike",
    "strikefund",
    "union",
    "workers",
    "bread and roses",
    "breadandroses",
    "pledge",
    "campaign",
    "mutual aid",
)


def _guessability(password: str, personal: list[str]) -> int:
    from zxcvbn import zxcvbn

    # zxcvbn's cost grows steeply with length (random text: 0.16 s at 72 characters,
    # 1.3-1.9 s at 128), which is why it refuses more than 72 unless told otherwise. A
    # longer passphrase is rated by its first 72: strong by then, or refused.
    return zxcvbn(password[:RATED_LENGTH], user_inputs=[*SITE_WORDS, *personal])["score"]


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verifying against this when no account matches keeps login time the same either way,
# so timing does not tell whether an email is registered.
DUMMY_HASH = hasher.hash("counterfund-timing-equaliser")
