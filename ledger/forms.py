from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from core.forms import PageForm
from core.text import SingleLineField


class DisbursementForm(PageForm):
    payee = SingleLineField(
        _l("Paid to"),
        validators=[Optional(), Length(max=120)],
        description=_l("An organization, or a display name: this is public."),
    )
    batch = TextAreaField(
        _l("Or many people at once (strike pay): one per line, “name; amount”"),
        validators=[Optional(), Length(max=400_000)],
        description=_l(
            "The names stay with the committee. The public sees the total, how many "
            "people were paid and a commitment to the list, so each of them can check "
            "their line was in it."
        ),
    )
    purpose = TextAreaField(_l("What it paid for"), validators=[DataRequired(), Length(max=2000)])
    amount = StringField(_l("Amount"), validators=[DataRequired(), Length(max=20)])
    receipt = FileField(
        _l("Receipt (PDF, PNG or JPEG)"),
        description=_l("Public with the ledger entry: black out personal data."),
    )
    submit = SubmitField(_l("Record for approval"))


class DecisionForm(PageForm):
    submit = SubmitField(_l("Confirm"))
