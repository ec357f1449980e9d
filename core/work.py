"""One unit of work per request: a view runs its services inside `form_transaction`,
which commits once when they succeed, and on a broken rule rolls everything back and
puts the rule's message on the form field it concerns (or on the whole form)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.extensions import db


class RuleError(ValueError):
    """A business rule refused the request: nothing may be kept of it."""

    def __init__(self, message: Any, field: str | None = None):
        super().__init__(str(message))
        self.message = message
        self.field = field

    def attach_to(self, form: Any, default_field: str | None = None) -> None:
        field = getattr(form, self.field or default_field or "", None)
        if field is None:
            form.form_errors.append(str(self.message))
        else:
            field.errors = [*field.errors, str(self.message)]


class Outcome:
    """Whether the unit of work was committed (False: rolled back, errors on the form)."""

    committed = False


@contextmanager
def form_transaction(form: Any, default_field: str | None = None) -> Iterator[Outcome]:
    """`default_field` takes the rules' messages that name no field (on forms that
    show no form-level errors)."""
    outcome = Outcome()
    try:
        yield outcome
    except RuleError as exc:
        db.session.rollback()
        exc.attach_to(form, default_field)
        return
    except BaseException:
        db.session.rollback()
        raise
    db.session.commit()
    outcome.committed = True
