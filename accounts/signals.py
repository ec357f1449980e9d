"""Account signals, sent inside the transaction that makes the change.

Accounts know nothing of campaigns or pledges; the packages that hold a person's data
subscribe. A receiver of `account_closing` erases or ends what it holds for the person
and raises a RuleError to refuse (the whole closing is rolled back and its message
shown). A receiver of `account_exporting` returns (section name, JSON-able data).
"""

from blinker import Namespace

_signals = Namespace()

account_closing = _signals.signal("account-closing")
account_exporting = _signals.signal("account-exporting")
