from __future__ import annotations

from typing import Any

from babel import Locale
from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from flask_wtf.i18n import translations as wtforms_translations
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from campaigns.models import FUNDING_LABELS, KIND_LABELS, ROLE_LABELS, OrganizerRole
from campaigns.periods import MAX_PERIODS
from core.forms import PageForm
from core.i18n import current_locale
from core.money import PLEDGE_CURRENCIES, Money, MoneyError, currency_name
from core.text import SingleLineField

# Languages a campaign can be written in (BCP 47). Interface translations are separate.
CAMPAIGN_LANGUAGES = (
    "en",
    "es",
    "pt-BR",
    "pt",
    "de",
    "fr",
    "it",
    "nl",
    "pl",
    "tr",
    "el",
    "ar",
    "fa",
    "hi",
    "bn",
    "ur",
    "zh",
    "ja",
    "ko",
    "vi",
    "id",
    "tl",
    "sw",
    "uk",
    "ru",
    "ro",
    "cs",
    "sv",
    "ca",
    "eu",
    "gl",
)

BUDGET_ROWS = 8
SOURCE_ROWS = 6


def language_choices():
    names = Locale("en")
    return [
        SelectChoice(code, Locale.parse(code, sep="-").get_display_name(names) or code)
        for code in CAMPAIGN_LANGUAGES
    ]


def currency_choices():
    """Active currencies a processor can charge, named in the visitor's language."""
    locale = current_locale()
    return [
        SelectChoice(code, f"{code} — {currency_name(code, locale)}")
        for code in sorted(PLEDGE_CURRENCIES)
    ]


class _Row(Form):
    """A row of the campaign form (FieldList of FormField): WTForms builds it with a
    meta of its own, not the FlaskForm's, so WTForms' built-in messages ("Field cannot
    be longer than…") would stay English. It takes the same translations."""

    class Meta:
        def get_translations(self, form):
            return wtforms_translations


class BudgetLineForm(_Row):
    item = SingleLineField(_l("What it pays for"), validators=[Optional(), Length(max=160)])
    amount = StringField(_l("Amount"), validators=[Optional(), Length(max=20)])
    required = BooleanField(_l("Required"), default=True)


class SourceForm(_Row):
    title = SingleLineField(_l("Source title"), validators=[Optional(), Length(max=200)])
    url = URLField(_l("Link (http or https)"), validators=[Optional(), Length(max=2000)])


class CampaignForm(PageForm):
    title = SingleLineField(_l("Title"), validators=[DataRequired(), Length(max=120)])
    slug = StringField(
        _l("Web address"),
        validators=[Optional(), Length(max=80)],
        description=_l(
            "Lower-case letters, digits and hyphens; leave empty to derive it from the title."
        ),
    )
    summary = SingleLineField(_l("One-line summary"), validators=[DataRequired(), Length(max=200)])
    story = TextAreaField(
        _l("Story"),
        validators=[Optional(), Length(max=50_000)],
        description=_l("Markdown. Say who is organising, what the money is for, and why now."),
    )
    kind = SelectField(
        _l("Kind"), choices=[SelectChoice(k.value, v) for k, v in KIND_LABELS.items()]
    )
    language = SelectField(_l("Written in"), choices=language_choices)
    currency = SelectField(_l("Currency"), choices=currency_choices, default="EUR")
    goal = StringField(
        _l("Goal"),
        validators=[DataRequired(), Length(max=20)],
        description=_l("In the currency's units, for example 5000 or 5000.50."),
    )
    min_backers = IntegerField(
        _l("Minimum number of backers (optional)"),
        validators=[Optional(), NumberRange(min=1, max=10_000_000)],
        description=_l("Funded only if at least this many people pledge."),
    )
    funding_model = SelectField(
        _l("Funding model"),
        choices=[SelectChoice(model.value, label) for model, label in FUNDING_LABELS.items()],
    )
    deadline = DateTimeLocalField(
        _l("Deadline (UTC)"),
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired()],
        description=_l("For a recurring campaign: when it stops (12 months at most)."),
    )
    repeats = SelectField(
        _l("Repeats"),
        choices=[
            SelectChoice("", _l("No: one deadline")),
            SelectChoice("week", _l("Every week")),
            SelectChoice("month", _l("Every month")),
        ],
        default="",
        description=_l(
            "A strike fund that pays out every week: supporters pledge an amount per "
            "period, charged in every period that meets its threshold."
        ),
    )
    period_threshold_amount = StringField(
        _l("Per period: least amount (optional)"),
        validators=[Optional(), Length(max=20)],
        description=_l("A period that raises less charges nobody; its pledges carry over."),
    )
    period_threshold_backers = IntegerField(
        _l("Per period: least number of backers (optional)"),
        validators=[Optional(), NumberRange(min=1, max=10_000_000)],
    )
    period_count = IntegerField(
        _l("Number of periods (optional)"),
        validators=[Optional(), NumberRange(min=1, max=60)],
        description=_l("It stops after this many periods, or at its end date if sooner."),
    )
    budget_lines = FieldList(FormField(BudgetLineForm), min_entries=BUDGET_ROWS, max_entries=40)
    budget_note = TextAreaField(
        _l("If the budget does not add up to the goal, explain why"),
        validators=[Optional(), Length(max=2000)],
    )
    sources = FieldList(FormField(SourceForm), min_entries=SOURCE_ROWS, max_entries=40)
    cover = FileField(
        _l("Cover image (optional)"),
        description=_l("JPEG, PNG or WebP. Location and camera data are removed."),
    )
    submit = SubmitField(_l("Save"))

    def validate_goal(self, field):
        try:
            money = Money.parse(field.data, self.currency.data, current_locale())
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None
        if money.amount <= 0:
            raise ValidationError(_l("The goal must be more than zero."))
        self.goal_money = money

    def validate_period_threshold_amount(self, field):
        self.threshold_money = None
        if not (field.data or "").strip():
            return
        try:
            money = Money.parse(field.data, self.currency.data, current_locale())
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None
        if money.amount <= 0:
            raise ValidationError(_l("The threshold must be more than zero."))
        self.threshold_money = money

    # A live campaign's terms: supporters pledged to them, so its edit page does not
    # show them and the edit view fills them from the campaign.
    TERMS = (
        "slug",
        "kind",
        "currency",
        "goal",
        "funding_model",
        "min_backers",
        "deadline",
        "repeats",
        "period_threshold_amount",
        "period_threshold_backers",
        "period_count",
        "budget_lines",
        "budget_note",
    )
    terms_frozen = False

    def validate(self, extra_validators=None) -> bool:
        """With the terms frozen, only what the page shows is validated: a field that is
        not on the page can never fail with nothing to highlight."""
        if not self.terms_frozen:
            return super().validate(extra_validators)
        form: Any = self  # WTForms' _fields carries no type
        every = dict(form._fields)
        form._fields = {name: f for name, f in every.items() if name not in self.TERMS}
        try:
            return super().validate(extra_validators)
        finally:
            form._fields = every

    def filled_budget_lines(self) -> list[tuple[str, Money, bool]]:
        lines, errors = [], False
        for row in (entry.form for entry in self.budget_lines):
            label, amount = (row.item.data or "").strip(), (row.amount.data or "").strip()
            if not label and not amount:
                continue
            if not label:
                row.item.errors.append(_l("Say what this amount pays for."))
                errors = True
                continue
            try:
                money = Money.parse(amount, self.currency.data, current_locale())
                if money.amount <= 0:
                    raise MoneyError(str(_l("Amounts must be more than zero.")))
            except MoneyError as exc:
                row.amount.errors.append(str(exc))
                errors = True
                continue
            lines.append((label, money, bool(row.required.data)))
        if errors:
            raise ValidationError("budget")
        return lines

    def filled_sources(self) -> list[tuple[str, str]]:
        sources, errors = [], False
        for row in (entry.form for entry in self.sources):
            title, url = (row.title.data or "").strip(), (row.url.data or "").strip()
            if not title and not url:
                continue
            if not url.lower().startswith(("http://", "https://")) or " " in url or len(url) < 11:
                row.url.errors.append(_l("Give a web address starting with http:// or https://."))
                errors = True
                continue
            sources.append((title or url, url))
        if errors:
            raise ValidationError("sources")
        return sources


class UpdateForm(PageForm):
    title = SingleLineField(_l("Title"), validators=[DataRequired(), Length(max=160)])
    body = TextAreaField(
        _l("Message"),
        validators=[DataRequired(), Length(max=20_000)],
        description=_l("Markdown. Supporters and anyone following the feed will see it."),
    )
    email_backers = BooleanField(_l("Also email it to the campaign's backers"), default=True)
    submit = SubmitField(_l("Post update"))


class AddOrganizerForm(PageForm):
    email = StringField(
        _l("Their email address"),
        validators=[DataRequired(), Length(max=254)],
    )
    role = SelectField(
        _l("Role"),
        choices=[
            SelectChoice(r.value, ROLE_LABELS[r])
            for r in (OrganizerRole.ORGANIZER, OrganizerRole.TREASURER)
        ],
    )
    submit = SubmitField(_l("Send the invitation"))


class ReportForm(PageForm):
    reason = TextAreaField(
        _l("What is wrong with this campaign?"),
        validators=[DataRequired(), Length(min=10, max=2000)],
    )
    submit = SubmitField(_l("Send report"))


class ConfirmForm(PageForm):
    """A bare CSRF-protected POST: launch, cancel, remove, suspend, restore."""

    reason = TextAreaField(_l("Reason"), validators=[Optional(), Length(max=2000)])
    submit = SubmitField(_l("Confirm"))


class SuspendForm(PageForm):
    reason = TextAreaField(
        _l("Reason (the campaign's organizers receive it)"),
        validators=[
            DataRequired(message=_l("Say why: the organizers are told.")),
            Length(max=2000),
        ],
    )


def load_campaign_into(form: CampaignForm, campaign) -> None:
    """Fill an edit form from a stored campaign (GET, or the frozen fields of a live one)."""
    form.slug.data = campaign.requested_slug or campaign.slug
    form.kind.data = campaign.kind
    form.currency.data = campaign.currency
    form.goal.data = campaign.goal.input_value(current_locale())
    form.funding_model.data = campaign.funding_model
    form.min_backers.data = campaign.min_backers
    form.deadline.data = campaign.deadline.replace(tzinfo=None)
    form.budget_note.data = campaign.budget_note
    recurrence = campaign.recurrence
    form.repeats.data = recurrence.interval if recurrence else ""
    if recurrence is not None:
        if recurrence.ends_at is not None:
            form.deadline.data = recurrence.ends_at.replace(tzinfo=None)
        threshold = recurrence.threshold_money(campaign.currency)
        form.period_threshold_amount.data = (
            threshold.input_value(current_locale()) if threshold else ""
        )
        form.period_threshold_backers.data = recurrence.threshold_backers
        form.period_count.data = (
            recurrence.max_periods if recurrence.max_periods != MAX_PERIODS else None
        )


def load_lists_into(form: CampaignForm, campaign) -> None:
    _fill_rows(
        form.budget_lines,
        BUDGET_ROWS,
        [
            {
                "item": b.label,
                "amount": b.money.input_value(current_locale()),
                "required": b.required,
            }
            for b in campaign.budget_lines
        ],
    )
    _fill_rows(
        form.sources, SOURCE_ROWS, [{"title": s.title, "url": s.url} for s in campaign.sources]
    )


def _fill_rows(field_list, minimum: int, rows: list[dict]) -> None:
    while len(field_list):
        field_list.pop_entry()
    for row in rows:
        field_list.append_entry(row)
    # A few empty rows to add more without JavaScript.
    for _ in range(max(minimum - len(rows), 2)):
        field_list.append_entry()
