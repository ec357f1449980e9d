"""localstripe, with two things Stripe does that localstripe does not, for tests.

- Processing fees: localstripe's balance transactions always carry fee 0. After
  `POST /_config/fees {"percent_bp": 140, "fixed": 25}` each new charge's balance
  transaction carries Stripe's kind of fee (1.4 % + 25 minor units, rounded half up).
- Fees that come late: after `{"lag": true}` a new charge has no balance transaction
  (as with Stripe, until the money settles) until `POST /_config/balance/settle`.

Run as `python -m tests.localstripe_plus --port N --from-scratch` (the conftest's
`localstripe` fixture does); everything else is localstripe unchanged.
"""

from __future__ import annotations

from localstripe import resources, server
from localstripe.server import get_post_data, web

FEES = {"percent_bp": 0, "fixed": 0, "lag": False}
_LATE: dict[str, str] = {}  # charge id → its balance transaction, not yet shown

_balance_init = resources.BalanceTransaction.__init__
_trigger_payment = resources.Charge._trigger_payment


def _with_fee(self, *args, **kwargs):
    _balance_init(self, *args, **kwargs)
    if self.type == "charge" and (FEES["percent_bp"] or FEES["fixed"]):
        self.fee = (self.amount * FEES["percent_bp"] + 5000) // 10000 + FEES["fixed"]
        self.fee_details = [{"amount": self.fee, "currency": self.currency, "type": "stripe_fee"}]


def _maybe_late(self, on_success=None):
    _trigger_payment(self, on_success)
    if FEES["lag"] and self.balance_transaction:
        _LATE[self.id] = self.balance_transaction
        self.balance_transaction = None


async def _config_fees(request):
    data = await get_post_data(request) or {}
    FEES.update(
        percent_bp=int(data.get("percent_bp", 0)),
        fixed=int(data.get("fixed", 0)),
        lag=str(data.get("lag", "")).lower() in ("1", "true"),
    )
    return web.json_response(FEES)


async def _settle_balance(request):
    for charge_id, transaction_id in list(_LATE.items()):
        resources.Charge._api_retrieve(charge_id).balance_transaction = transaction_id
        del _LATE[charge_id]
    return web.json_response({"settled": True})


resources.BalanceTransaction.__init__ = _with_fee
resources.Charge._trigger_payment = _maybe_late
server.app.router.add_post("/_config/fees", _config_fees)
server.app.router.add_post("/_config/balance/settle", _settle_balance)

if __name__ == "__main__":
    server.start()
