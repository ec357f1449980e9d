from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (
    DateTimeLocalField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from campaigns.forms import currency_choices
from core.forms import PageForm
from core.i18n import current_locale
from core.money import Money, MoneyError
from core.text import SingleLineField
from rounds.models import ROUND_ROLE_LABELS, RULE_LABELS, RoundRole


class RoundForm(PageForm):
    name = SingleLineField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    funder = SingleLineField(
        _l("Funder"),
        validators=[DataRequired(), Length(max=120)],
        description=_l("Who puts up the pool: a union, a foundation, a co-operative, a council."),
    )
    description = TextAreaField(
        _l("Description"),
        validators=[Optional(), Length(max=20_000)],
        description=_l(
            "Markdown. Who may apply, what the round is for, where the pool comes from."
        ),
    )
    sources = TextAreaField(
        _l("Sources"),
        validators=[Optional(), Length(max=4000)],
        description=_l("One per line: a title, then a link starting with http:// or https://."),
    )
    currency = SelectField(_l("Currency"), choices=currency_choices, default="EUR")
    rule = SelectField(
        _l("Rule"), choices=[SelectChoice(rule.value, label) for rule, label in RULE_LABELS.items()]
    )
    opens_at = DateTimeLocalField(
        _l("Opens (UTC)"), format="%Y-%m-%dT%H:%M", validators=[InputRequired()]
    )
    closes_at = DateTimeLocalField(
        _l("Closes (UTC)"),
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired()],
        description=_l("Pledges charged between the opening and the close count."),
    )
    ratio_percent = IntegerField(
        _l("Capped match: match each pledge at (percent)"),
        default=100,
        validators=[Optional(), NumberRange(min=1, max=1000)],
        description=_l("100 matches one to one; 200 doubles each pledge."),
    )
    cap_per_pledge = StringField(
        _l("Capped match: most per pledge (optional)"), validators=[Optional(), Length(max=20)]
    )
    cap_per_backer = StringField(
        _l("Capped match: most per backer and campaign (optional)"),
        validators=[Optional(), Length(max=20)],
    )
    cap_per_campaign = StringField(
        _l("Capped match: most per campaign (optional)"), validators=[Optional(), Length(max=20)]
    )
    max_share_percent = IntegerField(
        _l("Quadratic: most share of the pool for one campaign (percent, optional)"),
        validators=[Optional(), NumberRange(min=1, max=100)],
    )
    min_contribution = StringField(
        _l("Quadratic: smallest pledge that counts (optional)"),
        validators=[Optional(), Length(max=20)],
    )
    submit = SubmitField(_l("Open the round"))

    AMOUNTS = ("cap_per_pledge", "cap_per_backer", "cap_per_campaign", "min_contribution")

    def amounts(self) -> dict[str, int | None] | None:
        """The optional amounts in minor units, or None (with the fields' errors set)."""
        found: dict[str, int | None] = {}
        for name in self.AMOUNTS:
            field = self[name]
            text = (field.data or "").strip()
            found[name] = None
            if not text:
                continue
            try:
                money = Money.parse(text, self.currency.data, current_locale())
            except MoneyError as exc:
                field.errors = [*field.errors, str(exc)]
                continue
            if money.amount <= 0:
                field.errors = [*field.errors, str(_l("Amounts must be more than zero."))]
                continue
            found[name] = money.amount
        return None if any(self[name].errors for name in self.AMOUNTS) else found


class PoolForm(PageForm):
    amount = StringField(_l("Amount received"), validators=[DataRequired(), Length(max=20)])
    receipt = SingleLineField(
        _l("Receipt"),
        validators=[DataRequired(), Length(max=200)],
        description=_l(
            "What proves the money arrived, published on the ledger: the transfer's "
            "date and reference, for example."
        ),
    )
    submit = SubmitField(_l("Record the money"))


class ApplyForm(PageForm):
    campaign = SelectField(_l("Campaign"), choices=[])
    submit = SubmitField(_l("Apply"))


class RefuseForm(PageForm):
    reason = SingleLineField(
        _l("Reason"),
        validators=[DataRequired(), Length(max=500)],
        description=_l("The campaign's committee reads it."),
    )
    submit = SubmitField(_l("Refuse"))


class InviteForm(PageForm):
    email = StringField(_l("Their email address"), validators=[DataRequired(), Length(max=254)])
    role = SelectField(
        _l("Role"),
        choices=[
            SelectChoice(r.value, ROUND_ROLE_LABELS[r])
            for r in (RoundRole.CURATOR, RoundRole.TREASURER)
        ],
    )
    submit = SubmitField(_l("Send the invitation"))
