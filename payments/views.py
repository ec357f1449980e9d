from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime, time
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import db, limiter, login_manager
from core.i18n import current_locale
from core.security import content_security_policy
from core.text import spreadsheet_row
from core.urls import public_url_for
from core.work import flash_transaction, form_transaction
from payments import cards, disputes, emails, services
from payments.backends import enter_simulated_card, get_backend
from payments.backends.base import BackendError, CardError
from payments.forms import (
    AmountForm,
    CancelForm,
    CardForm,
    DisputeEvidenceForm,
    LinkRequestForm,
    PledgeForm,
)
from payments.models import Dispute, Pledge, PledgeStatus
from payments.tokens import LinkError, read_manage_token

bp = Blueprint("payments", __name__)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def payment_page(view):
    """Payment pages may load Stripe.js (and only they may), when Stripe is the backend."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        response = current_app.make_response(view(*args, **kwargs))
        if current_app.config["PAYMENT_BACKEND"] == "stripe":
            js = _origin(current_app.config["STRIPE_JS_URL"])
            api = _origin(current_app.config["STRIPE_API_BASE"]) or "https://api.stripe.com"
            frames = f" {js} https://hooks.stripe.com" if js else ""
            response.headers["Content-Security-Policy"] = content_security_policy(
                extra_script=f" {js}", extra_frame=frames, extra_connect=f" {api} {js}"
            )
        return response

    return wrapper


def _simulated() -> bool:
    return get_backend().name == "simulated"


# ---- Pledging ----------------------------------------------------------------------


@bp.route("/c/<slug>/pledge", methods=["GET", "POST"])
# Per client: slows card testing (many small pledges with stolen cards) and spam.
@limiter.limit(lambda: current_app.config["PLEDGE_RATE_LIMIT"], methods=["POST"])
@payment_page
def pledge(slug: str):
    campaign = db.session.scalar(
        # Every pledge asks whether the campaign recurs: one query, not two.
        select(Campaign).where(Campaign.slug == slug).options(joinedload(Campaign.recurrence))
    )
    if campaign is None or campaign.is_draft:
        abort(404)
    if not services.accepting_pledges(campaign):
        return render_template("payments/closed.html", campaign=campaign), 409
    form = PledgeForm()
    form.currency = campaign.currency
    if request.method == "GET":
        form.submission_key.data = secrets.token_urlsafe(24)
        form.currency_code.data = campaign.currency
    step = _amount_step(form, campaign)
    if step != "invalid" and campaign.recurrence is not None and not form.every_period.data:
        # A recurring pledge is the supporter's own choice, never a default.
        form.every_period.errors.append(
            _("Tick the box to pledge in every period: this campaign charges period by period.")
        )
        step = "invalid"
    until = _end_of_day(form.until.data)
    if step != "invalid" and until is not None and until <= utcnow():
        form.until.errors.append(_("Choose a day after today, or leave it empty."))
        step = "invalid"
    confirming = step == "confirm"
    if step == "go":
        outcome = _create_pledge(campaign, form)
        if outcome is not None:
            return outcome
    low, high = services.pledge_limits(campaign.currency)
    return render_template(
        "payments/pledge.html",
        campaign=campaign,
        form=form,
        low=low,
        high=high,
        simulated=_simulated(),
        confirming=confirming,
    ), (422 if request.method == "POST" and not confirming else 200)


def _amount_step(form: PledgeForm | AmountForm, campaign: Campaign) -> str:
    """ "invalid" (errors on the form), "confirm" (show the exact amount first) or "go"."""
    if not form.validate_on_submit():
        return "invalid"
    try:
        services.check_amount(campaign, form.amount_money)
    except services.PledgeError as exc:
        form.amount.errors.append(str(exc.message))
        return "invalid"
    return "go" if form.amount_confirmed() else "confirm"


def _details_missing(form: PledgeForm, user) -> bool:
    """What the form's validators cannot know: guests give an email, and the demo's
    card form a number. Marks the field and answers True when something is missing."""
    if user is None and not form.email.data:
        form.email.errors.append(_("Give an email address so we can send your receipt."))
        return True
    if _simulated() and not (form.card_number.data or "").strip():
        form.card_number.errors.append(_("Enter a card number."))
        return True
    return False


def _pledge_details(form: PledgeForm) -> dict:
    return {
        "amount": form.amount_money,
        "submission_key": form.submission_key.data,
        "guest_email": form.email.data or None,
        "visibility": form.visibility.data,
        "public_name": form.public_name.data or "",
        "public_message": form.public_message.data or "",
        "private_message": form.private_message.data or "",
        "every_period": bool(form.every_period.data),
        "until": _end_of_day(form.until.data),
    }


def _end_of_day(day) -> datetime | None:
    """A supporter's "until" day covers the whole day, in UTC."""
    if day is None:
        return None
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def _create_pledge(campaign: Campaign, form: PledgeForm):
    """Returns a redirect when done, None to re-render the form with its errors."""
    user = current_user._get_current_object() if current_user.is_authenticated else None
    if _details_missing(form, user):
        return None
    try:
        with form_transaction(form) as work:
            pledge, created = services.start_pledge(campaign, user=user, **_pledge_details(form))
            if created and _simulated():
                services.save_simulated_card(pledge, form.card_number.data)
            # Known before the commit, which expires the pledge (no re-read after it).
            active, next_step = pledge.status == PledgeStatus.ACTIVE, _next_step(pledge)
    except IntegrityError:
        # A parallel double submit won the race: show its pledge.
        raced = db.session.scalar(
            select(Pledge).where(Pledge.submission_key == form.submission_key.data)
        )
        if raced is None:
            raise
        return redirect(_next_step(raced))
    except BackendError:
        form.form_errors.append(_("The payment provider did not answer. Please try again."))
        return None
    if not work.committed:
        return None
    if created and active:  # (the same form sent twice shows the pledge it already made)
        flash(
            _("Thank you! Your pledge is active. Nothing is charged until the deadline."), "success"
        )
    return redirect(next_step)


def _next_step(pledge: Pledge) -> str:
    key = _key_for(pledge)
    if pledge.status == PledgeStatus.PENDING:
        return url_for("payments.card", key=key)
    return url_for("payments.manage", key=key)


def _key_for(pledge: Pledge) -> str:
    return services.manage_url(pledge).rsplit("/", 1)[-1]


# ---- Managing a pledge -------------------------------------------------------------


def _resolve(key: str) -> Pledge:
    """A pledge from a signed manage link (guests) or its id (its account's owner)."""
    if "." in key:
        try:
            public_id, version = read_manage_token(key)
        except LinkError as exc:
            abort(
                410 if exc.expired else 404,
                description=(
                    _("This link has expired. Ask for a new one below.")
                    if exc.expired
                    else _("This link is not valid. Ask for a new one below.")
                ),
            )
        pledge = db.session.scalar(select(Pledge).where(Pledge.public_id == public_id))
        if pledge is None or pledge.link_version != version:
            abort(404, description=_("This link is not valid. Ask for a new one below."))
        return pledge
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    pledge = db.session.scalar(select(Pledge).where(Pledge.public_id == key))
    if pledge is None or pledge.user_id != current_user.id:
        abort(404)  # someone else's pledge looks exactly like no pledge
    return pledge


def with_pledge(view):
    @wraps(view)
    def wrapper(key: str, **kwargs):
        pledge = _resolve(key)
        if not isinstance(pledge, Pledge):
            return pledge  # the login redirect
        return view(pledge, key, **kwargs)

    return wrapper


@bp.get("/pledge/<key>")
@with_pledge
def manage(pledge: Pledge, key: str):
    from ledger.views import entry_url_for_reference
    from payments.privacy import public_reference

    amount_form = AmountForm(amount=pledge.money.input_value(current_locale()))
    entry_url = (
        entry_url_for_reference(public_reference("charge", pledge.id))
        if pledge.status == PledgeStatus.CHARGED
        else None
    )
    return render_template(
        "payments/manage.html",
        pledge=pledge,
        key=key,
        amount_form=amount_form,
        entry_url=entry_url,
        pause_form=CancelForm(),
        can_change=pledge.status == PledgeStatus.ACTIVE
        and services.accepting_pledges(pledge.campaign),
        can_cancel=services.can_cancel(pledge),
    )


@bp.post("/pledge/<key>/amount")
@with_pledge
def change_amount(pledge: Pledge, key: str):
    form = AmountForm()
    form.currency = pledge.currency
    step = _amount_step(form, pledge.campaign)
    confirming = step == "confirm"
    if step == "go":
        with form_transaction(form, default_field="amount") as work:
            services.change_amount(pledge, form.amount_money)
        if work.committed:
            flash(
                _("Your pledge is now %(m)s.", m=pledge.money.format(current_locale())), "success"
            )
            return redirect(url_for("payments.manage", key=key))
    return render_template(
        "payments/manage.html",
        pledge=pledge,
        key=key,
        amount_form=form,
        can_change=True,
        can_cancel=services.can_cancel(pledge),
        confirming=confirming,
    ), (200 if confirming else 422)


@bp.route("/pledge/<key>/cancel", methods=["GET", "POST"])
@with_pledge
def cancel(pledge: Pledge, key: str):
    """GET: what cancelling means, and a button; POST: cancel."""
    form = CancelForm()
    if request.method == "POST" and form.validate_on_submit():
        with flash_transaction() as work:
            cards.cancel(pledge)
        if work.committed:
            flash(_("Your pledge is cancelled. Your card will not be charged."), "info")
        return redirect(url_for("payments.manage", key=key))
    if not services.can_cancel(pledge):
        return redirect(url_for("payments.manage", key=key))
    return render_template(
        "core/confirm.html",
        form=form,
        heading=_(
            "Cancel your pledge of %(m)s to “%(title)s”?",
            m=pledge.money.format(current_locale()),
            title=pledge.campaign.title,
        ),
        facts=[],
        consequences=[
            _(
                "Nothing will be charged, and your card is released. The campaign's totals "
                "go down by your pledge; you can pledge again while it takes pledges."
            )
        ],
        button=_("Yes, cancel my pledge"),
        action=url_for("payments.cancel", key=key),
        back=url_for("payments.manage", key=key),
        danger=True,
    )


@bp.route("/pledge/<key>/<any(pause, resume):action>", methods=["GET", "POST"])
@with_pledge
def pause_or_resume(pledge: Pledge, key: str, action: str):
    """GET (the link in a notice email): one button; POST: pause or resume."""
    form = CancelForm()
    if request.method == "POST":
        if form.validate_on_submit():
            with flash_transaction() as work:
                (services.pause if action == "pause" else services.resume)(pledge)
            if work.committed and action == "pause":
                flash(_("Paused: no period charges your pledge until you resume it."), "info")
            elif work.committed:
                flash(_("Resumed: your pledge counts again from this period."), "success")
        return redirect(url_for("payments.manage", key=key))
    if not pledge.recurring or pledge.status != (
        PledgeStatus.ACTIVE if action == "pause" else PledgeStatus.PAUSED
    ):
        return redirect(url_for("payments.manage", key=key))
    return render_template(
        "core/confirm.html",
        form=form,
        heading=_("Pause your pledge to “%(title)s”?", title=pledge.campaign.title)
        if action == "pause"
        else _("Resume your pledge to “%(title)s”?", title=pledge.campaign.title),
        facts=[],
        consequences=[
            _("No period charges it until you resume it; you can resume at any time.")
            if action == "pause"
            else _("It counts again from the period running now.")
        ],
        button=_("Pause my pledge") if action == "pause" else _("Resume my pledge"),
        action=url_for("payments.pause_or_resume", key=key, action=action),
        back=url_for("payments.manage", key=key),
        reversible=True,
    )


@bp.route("/pledge/<key>/card", methods=["GET", "POST"])
@with_pledge
@payment_page
def card(pledge: Pledge, key: str):
    if not services.needs_card(pledge):
        flash(_("This pledge no longer needs a card."), "info")
        return redirect(url_for("payments.manage", key=key))
    form = CardForm()
    if _simulated() and form.validate_on_submit():
        try:
            saved = enter_simulated_card(pledge.provider_setup_id or "", form.card_number.data)
            return _after_card(pledge, key, saved)
        except CardError as exc:
            db.session.rollback()
            form.card_number.errors.append(
                _("Your card was declined (%(code)s). Try another card.", code=exc.code)
            )
        except BackendError:
            db.session.rollback()
            form.card_number.errors.append(_("Please reload the page and try again."))
    elif request.method == "POST":
        return render_template(
            "payments/card.html", pledge=pledge, key=key, form=form, session=None, simulated=True
        ), 422
    session = services.start_card_setup(pledge)
    db.session.commit()
    return render_template(
        "payments/card.html",
        pledge=pledge,
        key=key,
        form=form,
        session=session,
        simulated=_simulated(),
        return_url=public_url_for("payments.card_return", key=key),
    ), (422 if form.errors else 200)


@bp.get("/pledge/<key>/card/return")
@with_pledge
def card_return(pledge: Pledge, key: str):
    """Where Stripe.js sends the browser after confirming the SetupIntent."""
    try:
        saved = get_backend().saved_card(pledge.provider_setup_id or "")
    except BackendError:
        flash(_("We could not check your card with the payment provider. Try again."), "error")
        return redirect(url_for("payments.card", key=key))
    if saved.status != "succeeded":
        flash(_("Your card could not be saved. Please try another card."), "error")
        return redirect(url_for("payments.card", key=key))
    return _after_card(pledge, key, saved)


def _after_card(pledge: Pledge, key: str, saved):
    was_pending = pledge.status == PledgeStatus.PENDING
    with flash_transaction() as work:
        outcome = cards.apply_saved_card(pledge, saved)
        retrying = pledge.retry_requested
    if not work.committed:
        return redirect(url_for("payments.manage", key=key))
    if retrying:
        message = _("Your new card is saved; we are trying it now.")
    elif not was_pending:
        message = _("Your new card is saved.")
    elif outcome == "activated":
        message = _("Thank you! Your pledge is active. Nothing is charged until the deadline.")
    else:
        message = _("Your pledge is active.")  # the webhook got there first
    flash(message, "success")
    return redirect(url_for("payments.manage", key=key))


@bp.route("/pledge/<key>/authenticate", methods=["GET", "POST"])
@with_pledge
@payment_page
def authenticate(pledge: Pledge, key: str):
    """The issuer wants the supporter present: confirm the payment on-session. With
    Stripe, a payment that waits for the bank's own step (3-D Secure) runs it here with
    Stripe.js, which then sends the browser to `authenticated`."""
    from payments import settlement

    if pledge.status != PledgeStatus.NEEDS_AUTHENTICATION:
        return redirect(url_for("payments.manage", key=key))
    form = CancelForm()  # a bare CSRF-checked confirmation
    if form.validate_on_submit():
        outcome = settlement.charge_on_session(pledge.id)
        db.session.refresh(pledge)
        if outcome == "needs_authentication" and pledge.provider_action_id:
            return redirect(url_for("payments.authenticate", key=key))  # the bank's step
        if outcome is not None:
            _flash_authentication(outcome)
        return redirect(url_for("payments.manage", key=key))
    return render_template(
        "payments/authenticate.html",
        pledge=pledge,
        key=key,
        form=form,
        simulated=_simulated(),
        client_secret=_next_action_secret(pledge),
        return_url=public_url_for("payments.authenticated", key=key),
    )


def _next_action_secret(pledge: Pledge) -> str | None:
    if not pledge.provider_action_id:
        return None
    try:
        return get_backend().next_action_secret(pledge.provider_action_id)
    except BackendError:
        return None  # the page offers a fresh on-session attempt instead


@bp.get("/pledge/<key>/authenticate/done")
@with_pledge
def authenticated(pledge: Pledge, key: str):
    """Where Stripe.js sends the browser after the bank's step. What the bank said is
    read from the provider (never from the URL) and recorded once: the webhook may
    have recorded it already."""
    from payments import settlement

    if not pledge.provider_action_id:
        if pledge.status == PledgeStatus.CHARGED:
            _flash_authentication("charged")
        return redirect(url_for("payments.manage", key=key))
    try:
        state = get_backend().payment_state(pledge.provider_action_id)
    except BackendError:
        _flash_authentication("unreachable")
        return redirect(url_for("payments.authenticate", key=key))
    outcome = settlement.record_authenticated(pledge.id, state)
    if outcome == "waiting":
        flash(_("Your bank has not confirmed the payment yet. Please try again."), "info")
        return redirect(url_for("payments.authenticate", key=key))
    _flash_authentication(outcome)
    if outcome == "failed":
        return redirect(url_for("payments.authenticate", key=key))
    return redirect(url_for("payments.manage", key=key))


def _flash_authentication(outcome: str) -> None:
    messages = {
        "charged": (_("Thank you: your payment is confirmed."), "success"),
        "unreachable": (_("The payment provider did not answer; we will retry."), "error"),
        "already_recorded": (_("Your payment was already recorded."), "info"),
    }
    text, category = messages.get(
        outcome,
        (_("Your bank did not confirm the payment. Try again or use another card."), "error"),
    )
    flash(text, category)


def _committee_campaign(slug: str) -> Campaign:
    """The campaign, for a member of its committee; anyone else gets a 404."""
    campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
    if campaign is None or campaign.role_of(current_user) is None:
        abort(404)
    return campaign


@bp.get("/c/<slug>/backers")
@login_required
def backers(slug: str):
    """The committee's view of its backers: as each chose to appear, with the message
    they left for everyone and the one they left for the organizers. Never an email."""
    campaign = _committee_campaign(slug)
    return render_template(
        "payments/backers.html", campaign=campaign, pledges=services.backers_of(campaign.id)
    )


BACKER_CSV_COLUMNS = (
    "pledged_at",
    "shown_as",
    "amount",
    "currency",
    "status",
    "public_message",
    "private_message",
)


@bp.get("/c/<slug>/backers.csv")
@login_required
def backers_csv(slug: str):
    campaign = _committee_campaign(slug)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(BACKER_CSV_COLUMNS)
    for p in services.backers_of(campaign.id):
        writer.writerow(
            spreadsheet_row(
                [
                    p.activated_at.strftime("%Y-%m-%dT%H:%M:%SZ") if p.activated_at else "",
                    p.shown_as,
                    p.money.decimal,
                    p.currency,
                    p.status,
                    p.public_message,
                    p.private_message,
                ]
            )
        )
    return current_app.response_class(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{campaign.slug}-backers.csv"'},
    )


@bp.get("/c/<slug>/settlement")
@login_required
def settlement_progress(slug: str):
    """The organizers' view of settlement, refreshing itself while it runs."""
    from payments import settlement

    campaign = _committee_campaign(slug)
    counts = settlement.progress(campaign.id)
    if request.args.get("format") == "json":
        return {"status": campaign.status, "counts": counts}
    return render_template(
        "payments/settlement.html",
        campaign=campaign,
        counts=counts,
        running=campaign.status in ("funded", "settling", "unfunded"),
    )


@bp.get("/moderation/reconciliation")
def reconciliation():
    """Operators: the latest comparison of the ledger with the provider's records."""
    from campaigns.moderation import moderator_required
    from payments.reconcile import latest_report

    @moderator_required
    def page():
        return render_template("payments/reconciliation.html", report=latest_report())

    return page()


@bp.get("/moderation/disputes")
def disputes_page():
    """Operators: chargebacks as the processor last described them."""
    from campaigns.moderation import moderator_required

    @moderator_required
    def page():
        return render_template("payments/disputes.html", disputes=disputes.for_operators())

    return page()


@bp.route("/moderation/disputes/<int:dispute_id>", methods=["GET", "POST"])
def dispute_answer(dispute_id: int):
    """Operators' answer (evidence) to a dispute that waits for one, sent to the
    processor from here; the text is not kept."""
    from campaigns.moderation import moderator_required

    @moderator_required
    def page():
        row = db.get_or_404(Dispute, dispute_id)
        form = DisputeEvidenceForm()
        if not row.answerable or row.evidence_submitted_at is not None:
            if request.method == "POST":
                flash(_("This dispute no longer takes evidence."), "error")
            return redirect(url_for("payments.disputes_page"))
        if form.validate_on_submit():
            try:
                disputes.submit_evidence(row, form.explanation.data)
            except BackendError:
                db.session.rollback()
                flash(_("The payment processor did not take the evidence. Try again."), "error")
                return redirect(url_for("payments.dispute_answer", dispute_id=row.id))
            db.session.commit()
            flash(_("Evidence sent. The bank decides; we follow its decision."), "success")
            return redirect(url_for("payments.disputes_page"))
        return render_template("payments/dispute_answer.html", dispute=row, form=form), (
            422 if form.errors else 200
        )

    return page()


@bp.get("/pledges")
@login_required
def mine():
    return render_template("payments/mine.html", pledges=services.pledges_of(current_user))


@bp.route("/pledges/links", methods=["GET", "POST"])
@limiter.limit("5 per hour", methods=["POST"])
def request_links():
    """A guest who lost their manage link gets new ones by email (never shown here)."""
    form = LinkRequestForm()
    if form.validate_on_submit():
        address = form.email.data.strip().lower()
        pledges = db.session.scalars(
            select(Pledge).where(
                Pledge.guest_email == address,
                Pledge.status != PledgeStatus.PENDING,
            )
        ).all()
        if pledges:
            # "Send me a new link" revokes every link sent before (a forwarded or
            # leaked email stops working).
            for p in pledges:
                p.link_version = (p.link_version or 0) + 1
            db.session.flush()
            emails.links(address, pledges)
            db.session.commit()
        flash(_("If we have pledges for that address, we have emailed links to them."), "info")
        return redirect(url_for("payments.request_links"))
    return render_template("payments/links.html", form=form), (422 if form.errors else 200)
