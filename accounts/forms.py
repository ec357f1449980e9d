from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from accounts.passwords import MAX_LENGTH, MIN_LENGTH, password_problem
from core.forms import PageForm
from core.text import SingleLineField


class RegisterForm(PageForm):
    email = EmailField(_l("Email address"), validators=[DataRequired(), Length(max=254)])
    display_name = SingleLineField(
        _l("Display name"),
        validators=[DataRequired(), Length(max=80)],
        description=_l("Shown on campaigns you organise. A pseudonym is fine."),
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired()],
        description=_l(
            "At least %(n)d characters. A few unusual words make a good one.", n=MIN_LENGTH
        ),
    )
    confirm = PasswordField(
        _l("Repeat password"),
        validators=[DataRequired(), EqualTo("password", message=_l("Passwords do not match."))],
    )
    submit = SubmitField(_l("Create account"))

    def validate_password(self, field):
        problem = password_problem(
            field.data, email=self.email.data or "", display_name=self.display_name.data or ""
        )
        if problem:
            raise ValidationError(problem)


class LoginForm(PageForm):
    email = EmailField(_l("Email address"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=MAX_LENGTH)])
    submit = SubmitField(_l("Log in"))


class LoginLinkForm(PageForm):
    email = EmailField(_l("Email address"), validators=[DataRequired(), Length(max=254)])
    submit = SubmitField(_l("Email me a login link"))


class ProfileForm(PageForm):
    display_name = SingleLineField(_l("Display name"), validators=[DataRequired(), Length(max=80)])
    submit = SubmitField(_l("Save"))


class PasswordChangeForm(PageForm):
    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=MAX_LENGTH)]
    )
    new_password = PasswordField(_l("New password"), validators=[DataRequired()])
    confirm = PasswordField(
        _l("Repeat new password"),
        validators=[DataRequired(), EqualTo("new_password", message=_l("Passwords do not match."))],
    )
    submit = SubmitField(_l("Change password"))

    def validate_new_password(self, field):
        problem = password_problem(field.data)
        if problem:
            raise ValidationError(problem)


class LogoutForm(PageForm):
    submit = SubmitField(_l("Log out"))


class EmailChangeForm(PageForm):
    email = EmailField(_l("New email address"), validators=[DataRequired(), Length(max=254)])
    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=MAX_LENGTH)]
    )
    submit = SubmitField(_l("Send a confirmation link"))


class CloseAccountForm(PageForm):
    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=MAX_LENGTH)]
    )
    confirm = BooleanField(
        _l("I understand: my account is closed for good, and this cannot be undone."),
        validators=[DataRequired(message=_l("Tick the box to confirm."))],
    )
    submit = SubmitField(_l("Close my account"))
