from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectChoice, SelectField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from core.forms import PageForm
from core.text import SingleLineField
from integrations.models import SCOPE_LABELS, WebhookEvent
from integrations.tokens import EXPIRY_DAYS


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class TokenForm(PageForm):
    name = SingleLineField(
        _l("Name"),
        validators=[DataRequired(), Length(max=80)],
        description=_l("What uses it: “union membership system”, for example."),
    )
    scopes = CheckboxesField(
        _l("It may"),
        choices=[SelectChoice(scope.value, label) for scope, label in SCOPE_LABELS.items()],
    )
    days = SelectField(
        _l("Expires after"),
        choices=[SelectChoice(str(d), _l("%(n)d days", n=d)) for d in EXPIRY_DAYS],
        default="90",
    )
    submit = SubmitField(_l("Create the token"))


EVENT_LABELS = {
    WebhookEvent.PLEDGE_CREATED: _l("A pledge is made"),
    WebhookEvent.PLEDGE_CANCELLED: _l("A pledge is cancelled"),
    WebhookEvent.CAMPAIGN_FUNDED: _l("The campaign is funded"),
    WebhookEvent.CAMPAIGN_FAILED: _l("The campaign is not funded"),
    WebhookEvent.CAMPAIGN_SETTLED: _l("Settlement is done"),
    WebhookEvent.LEDGER_ENTRY: _l("Money moves on the ledger"),
    WebhookEvent.UPDATE_PUBLISHED: _l("An update is posted"),
}


class WebhookForm(PageForm):
    url = StringField(
        _l("Address (https://…)"),
        validators=[DataRequired(), Length(max=2000)],
        description=_l("We POST each event there as JSON, signed with the secret shown below."),
    )
    events = CheckboxesField(
        _l("Events"),
        choices=[SelectChoice(event.value, label) for event, label in EVENT_LABELS.items()],
    )
    submit = SubmitField(_l("Add the webhook"))
