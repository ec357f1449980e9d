"""A simulated payment provider: no network, Stripe's test cards, its own records.

It plays an outside party. Its records live in their own SQLite file, written through
their own connection and committed on their own, never inside the app's transaction:
a crash between a simulated charge and our commit is the same real crash as with
Stripe, and tests count charges at the "provider". Unlike localstripe it honours
idempotency keys and off-session authentication, so those paths are tested here.

Cards (Stripe's test numbers and meanings):
  4242424242424242  succeeds
  4000000000000002  declined when saved
  4000000000000341  saves, declined when charged
  4000002760003184  saves, requires authentication when charged off-session
  4000000000009995  saves, declined for insufficient funds when charged
Any other number that passes the Luhn check behaves like 4242424242424242.
"""

from __future__ import annotations

import collections
import hashlib
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from core.money import Money
from payments.backends.base import (
    BackendError,
    CardError,
    ChargeResult,
    ProviderDispute,
    ProviderRefund,
    SavedCard,
    SetupSession,
)

SUCCEEDS = "4242424242424242"
DECLINED_ON_SAVE = "4000000000000002"
DECLINED_ON_CHARGE = "4000000000000341"
AUTH_REQUIRED_OFF_SESSION = "4000002760003184"
INSUFFICIENT_FUNDS = "4000000000009995"

# Stripe's European card pricing, close enough for a demo: 1.5% + 25 minor units.
FEE_PERCENT_BP = 150
FEE_FIXED = 25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, pledge_ref TEXT, created REAL);
CREATE TABLE IF NOT EXISTS setup_intents (
    id TEXT PRIMARY KEY, customer_id TEXT, pledge_ref TEXT, client_secret TEXT,
    status TEXT, payment_method_id TEXT, decline_code TEXT, created REAL);
CREATE TABLE IF NOT EXISTS payment_methods (
    id TEXT PRIMARY KEY, customer_id TEXT, number TEXT, brand TEXT, last4 TEXT,
    detached INTEGER DEFAULT 0, created REAL);
CREATE TABLE IF NOT EXISTS charges (
    id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, pledge_ref TEXT, customer_id TEXT,
    amount INTEGER, currency TEXT, fee INTEGER, status TEXT, decline_code TEXT,
    refunded INTEGER DEFAULT 0, created REAL);
CREATE INDEX IF NOT EXISTS charges_by_pledge ON charges (pledge_ref, status);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, charge_id TEXT, amount INTEGER,
    created REAL);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, operation TEXT, pledge_ref TEXT, object_id TEXT,
    created REAL);
"""


# Issuer identification number ranges, as card networks publish them (and Stripe's
# test cards follow): the longest matching prefix decides.
_BRAND_PREFIXES = (
    ("amex", ("34", "37")),
    ("diners", ("300", "301", "302", "303", "304", "305", "36", "38", "39")),
    ("discover", ("6011", "644", "645", "646", "647", "648", "649", "65")),
    ("jcb", tuple(str(n) for n in range(3528, 3590))),
    ("mastercard", ("51", "52", "53", "54", "55", *(str(n) for n in range(2221, 2721)))),
    ("unionpay", ("62", "81")),
    ("visa", ("4",)),
)


def card_brand(number: str) -> str:
    """The card network of a number, as Stripe names it ("unknown" when none fits)."""
    found = [
        (len(prefix), brand)
        for brand, prefixes in _BRAND_PREFIXES
        for prefix in prefixes
        if number.startswith(prefix)
    ]
    return max(found)[1] if found else "unknown"


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(number)):
        value = int(digit)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


CONNECT_TIMEOUT = 60  # seconds a connection waits for another's lock


def _wait_for_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting for whoever holds it. SQLite answers "database
    is locked" at once, without its busy timeout, to a connection asking for WAL while
    another still writes to the file in rollback mode: workers starting together on a
    fresh file."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SimulatedProvider:
    """The provider's own records, in their own SQLite file."""

    def __init__(self, path: str, latency: float = 0.0, rate_limit: int = 0):
        self.path = path
        self.latency = latency
        # Like Stripe's live-mode limit: more than `rate_limit` calls in any second are
        # refused (429). 0 means no limit. Counted per process.
        self.rate_limit = rate_limit
        self.rate_limited = 0
        self._recent: collections.deque[float] = collections.deque()
        self._rate_lock = threading.Lock()
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Opened lazily, one connection per thread (and so per forked process).
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=CONNECT_TIMEOUT, isolation_level=None)
            _wait_for_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self):
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def _call(self, conn, operation: str, pledge_ref: str, object_id: str) -> None:
        # When the call arrived (before its latency), as a provider counts its limit:
        # several processes' calls are compared by it (bench/settlement.py --processes).
        arrived = getattr(self._local, "arrived", None) or time.time()
        self._local.arrived = None
        conn.execute(
            "INSERT INTO calls (operation, pledge_ref, object_id, created) VALUES (?, ?, ?, ?)",
            (operation, pledge_ref, object_id, arrived),
        )

    def _wait(self) -> None:
        self._local.arrived = time.time()
        if self.rate_limit:
            with self._rate_lock:
                now = time.monotonic()
                while self._recent and self._recent[0] <= now - 1.0:
                    self._recent.popleft()
                if len(self._recent) >= self.rate_limit:
                    self.rate_limited += 1
                    raise BackendError("rate limited (429): too many requests")
                self._recent.append(now)
        if self.latency:
            time.sleep(self.latency)

    # ---- what a browser does (Stripe.js in the real thing) ------------------------

    def confirm_setup(self, setup_id: str, card_number: str) -> SavedCard:
        """Save a card on a SetupIntent, as Stripe.js's confirmCardSetup would."""
        number = "".join(ch for ch in card_number if ch.isdigit())
        refusal = None
        with self._transaction() as conn:
            intent = conn.execute(
                "SELECT * FROM setup_intents WHERE id = ?", (setup_id,)
            ).fetchone()
            if intent is None:
                raise BackendError("no such setup intent")
            self._call(conn, "confirm_setup", intent["pledge_ref"], setup_id)
            if intent["status"] == "succeeded":
                return self._saved(conn, intent)
            if not luhn_ok(number):
                refusal = CardError("Your card number is incorrect.", "incorrect_number")
            elif number == DECLINED_ON_SAVE:
                refusal = CardError("Your card was declined.", "card_declined")
            if refusal is not None:
                # Recorded and committed: the provider remembers declines too.
                conn.execute(
                    "UPDATE setup_intents SET status = 'failed', decline_code = ? WHERE id = ?",
                    (refusal.code, setup_id),
                )
            else:
                method_id = "pm_sim_" + secrets.token_hex(8)
                conn.execute(
                    "INSERT INTO payment_methods (id, customer_id, number, brand, last4, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        method_id,
                        intent["customer_id"],
                        number,
                        card_brand(number),
                        number[-4:],
                        time.time(),
                    ),
                )
                conn.execute(
                    "UPDATE setup_intents SET status = 'succeeded', payment_method_id = ?"
                    " WHERE id = ?",
                    (method_id, setup_id),
                )
                intent = conn.execute(
                    "SELECT * FROM setup_intents WHERE id = ?", (setup_id,)
                ).fetchone()
                return self._saved(conn, intent)
        raise refusal

    def _saved(self, conn, intent) -> SavedCard:
        method = conn.execute(
            "SELECT * FROM payment_methods WHERE id = ?", (intent["payment_method_id"],)
        ).fetchone()
        return SavedCard(
            status="succeeded",
            payment_method_id=method["id"],
            brand=method["brand"],
            last4=method["last4"],
            pledge_ref=intent["pledge_ref"],
            fingerprint="fp_sim_" + hashlib.sha256(method["number"].encode()).hexdigest()[:16],
        )

    # ---- counting, for tests and reconciliation -----------------------------------

    def charges_for(self, pledge_ref: str) -> list[sqlite3.Row]:
        return (
            self._connection()
            .execute(
                "SELECT * FROM charges WHERE pledge_ref = ? AND status = 'succeeded'", (pledge_ref,)
            )
            .fetchall()
        )

    def count_calls(self, operation: str, pledge_ref: str | None = None) -> int:
        query = "SELECT count(*) FROM calls WHERE operation = ?"
        args: tuple = (operation,)
        if pledge_ref is not None:
            query += " AND pledge_ref = ?"
            args += (pledge_ref,)
        return self._connection().execute(query, args).fetchone()[0]

    def is_detached(self, payment_method_id: str) -> bool:
        row = (
            self._connection()
            .execute("SELECT detached FROM payment_methods WHERE id = ?", (payment_method_id,))
            .fetchone()
        )
        return bool(row and row[0])


class SimulatedBackend:
    name = "simulated"
    livemode = False  # never real money

    def __init__(self, provider: SimulatedProvider):
        self.provider = provider

    def create_customer(self, pledge_ref: str) -> str:
        self.provider._wait()
        customer_id = "cus_sim_" + secrets.token_hex(8)
        with self.provider._transaction() as conn:
            conn.execute(
                "INSERT INTO customers (id, pledge_ref, created) VALUES (?, ?, ?)",
                (customer_id, pledge_ref, time.time()),
            )
            self.provider._call(conn, "create_customer", pledge_ref, customer_id)
        return customer_id

    def start_setup(self, pledge_ref: str, customer_id: str) -> SetupSession:
        self.provider._wait()
        setup_id = "seti_sim_" + secrets.token_hex(8)
        secret = f"{setup_id}_secret_{secrets.token_hex(12)}"
        with self.provider._transaction() as conn:
            conn.execute(
                "INSERT INTO setup_intents (id, customer_id, pledge_ref, client_secret, status,"
                " created) VALUES (?, ?, ?, ?, 'requires_payment_method', ?)",
                (setup_id, customer_id, pledge_ref, secret, time.time()),
            )
            self.provider._call(conn, "start_setup", pledge_ref, setup_id)
        return SetupSession(setup_id=setup_id, client_secret=secret)

    def saved_card(self, setup_id: str) -> SavedCard:
        conn = self.provider._connection()
        intent = conn.execute("SELECT * FROM setup_intents WHERE id = ?", (setup_id,)).fetchone()
        if intent is None:
            raise BackendError("no such setup intent")
        if intent["status"] == "succeeded":
            return self.provider._saved(conn, intent)
        status = "failed" if intent["status"] == "failed" else "requires_payment_method"
        return SavedCard(
            status=status,
            decline_code=intent["decline_code"] or "",
            pledge_ref=intent["pledge_ref"],
        )

    def charge(
        self,
        *,
        pledge_ref,
        amount: Money,
        customer_id,
        payment_method_id,
        idempotency_key,
        on_session: bool = False,
    ) -> ChargeResult:
        self.provider._wait()
        with self.provider._transaction() as conn:
            self.provider._call(conn, "charge", pledge_ref, idempotency_key)
            earlier = conn.execute(
                "SELECT * FROM charges WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if earlier is not None:  # Stripe replays the first answer for a reused key
                return self._result(earlier)
            method = conn.execute(
                "SELECT * FROM payment_methods WHERE id = ? AND customer_id = ?",
                (payment_method_id, customer_id),
            ).fetchone()
            status, code = "succeeded", ""
            if method is None or method["detached"]:
                status, code = "failed", "payment_method_unavailable"
            elif method["number"] == DECLINED_ON_CHARGE:
                status, code = "failed", "card_declined"
            elif method["number"] == INSUFFICIENT_FUNDS:
                status, code = "failed", "insufficient_funds"
            elif method["number"] == AUTH_REQUIRED_OFF_SESSION and not on_session:
                status, code = "requires_action", "authentication_required"
            fee = (
                amount.amount * FEE_PERCENT_BP // 10_000 + FEE_FIXED if status == "succeeded" else 0
            )
            charge_id = "ch_sim_" + secrets.token_hex(8)
            conn.execute(
                "INSERT INTO charges (id, idempotency_key, pledge_ref, customer_id, amount,"
                " currency, fee, status, decline_code, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    charge_id,
                    idempotency_key,
                    pledge_ref,
                    customer_id,
                    amount.amount,
                    amount.currency,
                    fee,
                    status,
                    code,
                    time.time(),
                ),
            )
            row = conn.execute("SELECT * FROM charges WHERE id = ?", (charge_id,)).fetchone()
            return self._result(row)

    @staticmethod
    def _result(row) -> ChargeResult:
        return ChargeResult(
            status=row["status"],
            charge_id=row["id"],
            amount=row["amount"],
            currency=row["currency"],
            fee=row["fee"],
            decline_code=row["decline_code"] or "",
        )

    def find_charge(self, pledge_ref: str, customer_id: str) -> ChargeResult | None:
        self.provider._wait()
        row = (
            self.provider._connection()
            .execute(
                "SELECT * FROM charges WHERE pledge_ref = ? AND status = 'succeeded'"
                " ORDER BY created LIMIT 1",
                (pledge_ref,),
            )
            .fetchone()
        )
        return self._result(row) if row else None

    def refund(self, charge_id: str, amount: Money, idempotency_key: str) -> str:
        self.provider._wait()
        with self.provider._transaction() as conn:
            earlier = conn.execute(
                "SELECT id FROM refunds WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if earlier:
                return earlier["id"]
            charge = conn.execute("SELECT * FROM charges WHERE id = ?", (charge_id,)).fetchone()
            if charge is None or charge["status"] != "succeeded":
                raise BackendError("no such successful charge")
            if charge["refunded"] + amount.amount > charge["amount"]:
                raise BackendError("refund exceeds the charge")
            refund_id = "re_sim_" + secrets.token_hex(8)
            conn.execute(
                "INSERT INTO refunds (id, idempotency_key, charge_id, amount, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (refund_id, idempotency_key, charge_id, amount.amount, time.time()),
            )
            conn.execute(
                "UPDATE charges SET refunded = refunded + ? WHERE id = ?",
                (amount.amount, charge_id),
            )
            self.provider._call(conn, "refund", charge["pledge_ref"], refund_id)
            return refund_id

    def refunds_of(self, charge_id: str) -> list[ProviderRefund]:
        rows = (
            self.provider._connection()
            .execute(
                "SELECT r.id, r.amount, c.currency FROM refunds r"
                " JOIN charges c ON c.id = r.charge_id WHERE r.charge_id = ? ORDER BY r.created",
                (charge_id,),
            )
            .fetchall()
        )
        return [ProviderRefund(r["id"], r["amount"], r["currency"], "succeeded") for r in rows]

    def payment_state(self, charge_id: str) -> ChargeResult:
        row = (
            self.provider._connection()
            .execute("SELECT * FROM charges WHERE id = ?", (charge_id,))
            .fetchone()
        )
        if row is None:
            raise BackendError("no such charge")
        return self._result(row)

    def next_action_secret(self, charge_id: str) -> str | None:
        return None  # its bank's page is the authenticate form itself

    def charge_fee(self, charge_id: str) -> int | None:
        return self.payment_state(charge_id).fee

    def dispute(self, dispute_id: str) -> ProviderDispute:
        raise BackendError("the simulated provider has no disputes")

    def submit_dispute_evidence(self, dispute_id: str, explanation: str) -> ProviderDispute:
        raise BackendError("the simulated provider has no disputes")

    def charge_records(self):
        """Every successful charge the provider holds (for reconciliation)."""
        rows = self.provider._connection().execute(
            "SELECT pledge_ref, amount, currency, fee, refunded FROM charges"
            " WHERE status = 'succeeded' ORDER BY created"
        )
        for row in rows:
            yield dict(row)

    def release(self, customer_id: str, payment_method_id: str | None) -> None:
        self.provider._wait()
        with self.provider._transaction() as conn:
            if payment_method_id:
                conn.execute(
                    "UPDATE payment_methods SET detached = 1 WHERE id = ? AND customer_id = ?",
                    (payment_method_id, customer_id),
                )
            else:
                conn.execute(
                    "UPDATE payment_methods SET detached = 1 WHERE customer_id = ?",
                    (customer_id,),
                )
            self.provider._call(conn, "release", "", payment_method_id or customer_id)
