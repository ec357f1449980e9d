"""The base of every form a page draws (each feature's forms derive from `PageForm`)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms.csrf.core import CSRFTokenField


class PageForm(FlaskForm):
    """A Flask-WTF form whose CSRF token is drawn without an id.

    Pages draw several forms (a page's own, the header's log-out button, one per row of
    a committee), and WTForms would give each token `id="csrf_token"`: the same id
    several times on one page, which assistive technology and `for=` resolve to the
    first. A hidden field is never labelled, so it needs no id at all.
    """

    class Meta(FlaskForm.Meta):
        def bind_field(self, form: Any, unbound_field: Any, options: dict) -> Any:
            field = super().bind_field(form, unbound_field, options)
            if isinstance(field, CSRFTokenField):
                field.render_kw = {"id": False}  # WTForms leaves out attributes set to False
            return field
