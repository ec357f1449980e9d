"""One unit of work per request: a view runs its services inside `form_transaction` (or
`flash_transaction`, for a bare button), which commits once when they succeed, and on a
broken rule rolls everything back and puts the rule's message on the form field it
concerns (or flashes it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from flask import flash

from core.extensions import db


class RuleError(ValueError):
    """A business rule refused the request: nothing may be kept of it."""

    def __init__(self, message: Any, field: str | None = None):
        super().__init__(str(message))
        self.message = message
        self.field = field

    def messages(self) -> list[str]:
        return [str(self.message)]

    def attach_to(self, form: Any, default_field: str | None = None) -> None:
        field = getattr(form, self.field or default_field or "", None)
        if field is None:
            form.form_errors.append(str(self.message))
        else:
            field.errors = [*field.errors, str(self.message)]


class Outcome:
    """Whether the unit of work was committed (False: rolled back, the rule told)."""

    committed = False


@contextmanager
def _unit_of_work(tell: Callable[[RuleError], None]) -> Iterator[Outcome]:
    outcome = Outcome()
    try:
        yield outcome
    except RuleError as exc:
        db.session.rollback()
        tell(exc)
        return
    except BaseException:
        db.session.rollback()
        raise
    db.session.commit()
    outcome.committed = True


def form_transaction(
    form: Any, default_field: str | None = None
) -> AbstractContextManager[Outcome]:
    """For a form: a broken rule's message goes on the field it names (or on
    `default_field`, for forms that show no form-level errors)."""
    return _unit_of_work(lambda exc: exc.attach_to(form, default_field))


def flash_transaction() -> AbstractContextManager[Outcome]:
    """For a bare button (launch, cancel, approve): a broken rule's messages are
    flashed, for the page the view redirects to."""

    def tell(exc: RuleError) -> None:
        for message in exc.messages():
            flash(message, "error")

    return _unit_of_work(tell)
