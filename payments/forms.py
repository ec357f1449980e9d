from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    RadioField,
    SelectChoice,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from accounts.services import AccountError, normalise_email
from core.forms import PageForm
from core.i18n import current_locale
from core.money import Money, MoneyError
from core.text import SingleLineField


class AmountMixin:
    amount: StringField
    confirmed_amount: HiddenField

    currency: str = "EUR"

    def validate_currency_code(self, field):
        if field.data and field.data.upper() != self.currency:
            raise ValidationError(
                _l(
                    "This campaign collects %(c)s, not %(other)s.",
                    c=self.currency,
                    other=field.data.upper()[:3],
                )
            )

    def validate_amount(self, field):
        try:
            self.amount_money = Money.parse(field.data, self.currency, current_locale())
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None

    def amount_confirmed(self) -> bool:
        """Whether the supporter has seen and confirmed exactly this amount (in minor
        units). If not, the form now carries it, for the confirmation step."""
        exact = str(self.amount_money.amount)
        if self.confirmed_amount.data == exact:
            return True
        self.confirmed_amount.data = exact
        return False


class PledgeForm(AmountMixin, PageForm):
    submission_key = HiddenField(validators=[DataRequired(), Length(min=16, max=64)])
    # Sent back by the form; a pledge in any other currency than the campaign's is refused.
    currency_code = HiddenField(validators=[Optional(), Length(max=3)])
    amount = StringField(_l("Amount"), validators=[DataRequired(), Length(max=32)])
    # The exact amount (minor units) the supporter saw on the confirmation step.
    confirmed_amount = HiddenField(validators=[Optional(), Length(max=20)])
    visibility = RadioField(
        _l("How you appear on the campaign page"),
        choices=[
            SelectChoice("anonymous", _l("Anonymous")),
            SelectChoice("pseudonym", _l("A pseudonym of my choice")),
            SelectChoice("name", _l("My name")),
        ],
        default="anonymous",
    )
    public_name = SingleLineField(
        _l("Name or pseudonym to show"),
        validators=[Optional(), Length(max=80)],
        description=_l("Leave empty if you chose anonymous."),
    )
    public_message = TextAreaField(
        _l("Public message (optional)"), validators=[Optional(), Length(max=500)]
    )
    private_message = TextAreaField(
        _l("Private message to the organizers (optional)"),
        validators=[Optional(), Length(max=2000)],
    )
    email = EmailField(
        _l("Email address"),
        validators=[Optional(), Length(max=254)],
        description=_l("For your receipt and a private link to manage your pledge. Never shown."),
    )
    card_number = StringField(
        _l("Card number (demo)"),
        validators=[Optional(), Length(max=30)],
        description=_l("Demo only: try 4242 4242 4242 4242, or 4000 0000 0000 0002 for a decline."),
    )
    every_period = BooleanField(
        _l("Charge me this amount in every period that meets its threshold")
    )
    until = DateField(
        _l("Until (optional)"),
        validators=[Optional()],
        description=_l("No period ending after this day charges you."),
    )
    submit = SubmitField(_l("Pledge"))

    def validate_email(self, field):
        if field.data:
            try:
                field.data = normalise_email(field.data)
            except AccountError as exc:
                raise ValidationError(str(exc.message)) from None


class AmountForm(AmountMixin, PageForm):
    amount = StringField(_l("New amount"), validators=[DataRequired(), Length(max=32)])
    confirmed_amount = HiddenField(validators=[Optional(), Length(max=20)])
    submit = SubmitField(_l("Change amount"))


class CardForm(PageForm):
    card_number = StringField(
        _l("Card number (demo)"),
        validators=[DataRequired(), Length(max=30)],
        description=_l("Demo only: try 4242 4242 4242 4242."),
    )
    submit = SubmitField(_l("Save card"))


class CancelForm(PageForm):
    submit = SubmitField(_l("Cancel my pledge"))


class DisputeEvidenceForm(PageForm):
    """Operators' answer to a dispute, sent to the processor only (not kept here)."""

    explanation = TextAreaField(
        _l("What happened, for the cardholder's bank"),
        validators=[DataRequired(), Length(max=20000)],
    )
    submit = SubmitField(_l("Send to the payment processor"))


class LinkRequestForm(PageForm):
    email = EmailField(
        _l("Email address you pledged with"), validators=[DataRequired(), Length(max=254)]
    )
    submit = SubmitField(_l("Send me my links"))
