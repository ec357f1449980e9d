"""Pledge operations. Services check rules and flush; views and jobs commit once.

Campaign totals move in the same transaction as the pledge, with a single guarded
UPDATE (`pledged_amount = pledged_amount + :delta ... WHERE <rules>`), so parallel
pledges never lose an update and a rule (campaign still live, the last-24-hours
freeze) cannot be raced past between a read and a write.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask import current_app, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, false, not_, or_, select, true, update
from sqlalchemy.orm.attributes import set_committed_value

from accounts.models import User
from campaigns.models import Campaign, CampaignStatus, FundingModel
from core.clock import utcnow
from core.extensions import changed, db
from core.i18n import current_locale, format_money
from core.money import Money
from core.work import RuleError
from payments import emails, lifecycle, signals
from payments.backends import enter_simulated_card, get_backend
from payments.backends.base import CardError, SavedCard
from payments.models import Pledge, PledgeStatus, Visibility
from payments.privacy import card_tag
from payments.tokens import manage_key


class PledgeError(RuleError):
    """A pledge rule refused the change (the message says why, in the supporter's words)."""


def accepting_pledges(campaign: Campaign) -> bool:
    return campaign.status == CampaignStatus.LIVE and campaign.deadline > utcnow()


def pledge_limits(currency: str) -> tuple[Money, Money]:
    return Money.from_major(1, currency), Money.from_major(
        current_app.config["PLEDGE_MAX_AMOUNT"], currency
    )


def check_amount(campaign: Campaign, amount: Money) -> None:
    if amount.currency != campaign.currency:
        raise PledgeError(_l("This campaign collects %(c)s.", c=campaign.currency), "amount")
    low, high = pledge_limits(campaign.currency)
    if amount < low:
        raise PledgeError(_l("The smallest pledge is %(m)s.", m=format_money(low)), "amount")
    if amount > high:
        raise PledgeError(_l("The largest pledge is %(m)s.", m=format_money(high)), "amount")


def withdraw_from_totals(pledge: Pledge) -> None:
    """The platform takes a pledge out of its campaign's totals (a standing pledge paused
    after failing period after period): no supporter's choice, so no rule refuses it."""
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == pledge.campaign_id)
        .values(
            pledged_amount=Campaign.pledged_amount - pledge.amount,
            backer_count=Campaign.backer_count - 1,
        )
        .execution_options(synchronize_session=False)
    )


def _last_day_freeze(
    campaign: Campaign, now, window: timedelta, delta_amount: int, delta_backers: int
):
    """In the last day before the deadline of a funded all-or-nothing campaign, or
    before the end of a recurring campaign's period that meets its threshold, a change
    that would undo that is refused (SQL, evaluated on the row the UPDATE writes)."""
    recurrence = campaign.recurrence
    if recurrence is None:
        return and_(
            Campaign.funding_model == FundingModel.ALL_OR_NOTHING,
            Campaign.deadline <= now + window,
            _funded(Campaign.pledged_amount, Campaign.backer_count),
            not_(
                _funded(
                    Campaign.pledged_amount + delta_amount, Campaign.backer_count + delta_backers
                )
            ),
        )
    _number, period_end = recurrence.current(campaign.launched_at or now, now)
    if period_end > now + window:
        return false()

    def met(pledged, backers):
        return and_(
            true()
            if recurrence.threshold_amount is None
            else pledged >= recurrence.threshold_amount,
            true()
            if recurrence.threshold_backers is None
            else backers >= recurrence.threshold_backers,
        )

    return and_(
        met(Campaign.pledged_amount, Campaign.backer_count),
        not_(met(Campaign.pledged_amount + delta_amount, Campaign.backer_count + delta_backers)),
    )


def _funded(pledged, backers):
    return and_(
        pledged >= Campaign.goal_amount,
        or_(Campaign.min_backers.is_(None), backers >= Campaign.min_backers),
    )


def adjust_totals(campaign: Campaign, delta_amount: int, delta_backers: int) -> None:
    """Apply a change to the campaign's totals atomically, or refuse it."""
    now = utcnow()
    window = timedelta(seconds=current_app.config["PLEDGE_FREEZE_WINDOW"])
    freeze = _last_day_freeze(campaign, now, window, delta_amount, delta_backers)
    open_and_live = and_(Campaign.status == CampaignStatus.LIVE, Campaign.deadline > now)
    if delta_amount < 0 or delta_backers < 0:
        # Supporters can always step back from a suspended campaign (no freeze: it
        # will not be charged as it stands), and from a live one outside the freeze.
        conditions = [
            Campaign.id == campaign.id,
            or_(and_(open_and_live, not_(freeze)), Campaign.status == CampaignStatus.SUSPENDED),
        ]
    else:
        conditions = [Campaign.id == campaign.id, open_and_live]
    totals = db.session.execute(
        update(Campaign)
        .where(*conditions)
        .values(
            pledged_amount=Campaign.pledged_amount + delta_amount,
            backer_count=Campaign.backer_count + delta_backers,
        )
        .returning(Campaign.pledged_amount, Campaign.backer_count)
        .execution_options(synchronize_session=False)
    ).first()
    if totals is not None:
        # The row as written: what the rest of the transaction shows, without a re-read.
        set_committed_value(campaign, "pledged_amount", totals.pledged_amount)
        set_committed_value(campaign, "backer_count", totals.backer_count)
        return
    db.session.refresh(campaign)
    if not accepting_pledges(campaign):
        raise PledgeError(_l("This campaign is not taking pledges any more."))
    if campaign.recurrence is not None:
        raise PledgeError(
            _l(
                "In the last day of a period that meets its threshold, a change that would "
                "take it below is not possible: other supporters are counting on it. Try "
                "again once this period has ended."
            )
        )
    raise PledgeError(
        _l(
            "In the last day before the deadline, a change that would take this campaign "
            "below its goal is not possible: the campaign is funded, and other supporters "
            "are counting on it."
        )
    )


def new_public_id() -> str:
    """Random and URL-safe; never starting with "-", which a command line (`flask refund
    ID`) would read as an option."""
    while (public_id := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return public_id


def _refuse_new_pledge_problems(
    campaign: Campaign,
    amount: Money,
    user: User | None,
    guest_email: str | None,
    visibility: str,
    public_name: str,
    every_period: bool,
) -> None:
    """Raise the PledgeError of the first rule a new pledge breaks."""
    if not accepting_pledges(campaign):
        raise PledgeError(_l("This campaign is not taking pledges."))
    check_amount(campaign, amount)
    if visibility not in set(Visibility):
        raise PledgeError(_l("Choose how you appear."), "visibility")
    if visibility != Visibility.ANONYMOUS and not public_name.strip():
        raise PledgeError(
            _l("Give the name or pseudonym to show, or choose anonymous."), "public_name"
        )
    if user is None and not guest_email:
        raise PledgeError(_l("Give an email address so we can send your receipt."), "email")
    if campaign.recurrence is not None and not every_period:
        # Never assumed: the supporter says so themselves.
        raise PledgeError(
            _l("Tick the box to pledge in every period: this campaign charges period by period."),
            "every_period",
        )
    if user is not None and db.session.scalar(
        select(Pledge.id).where(
            Pledge.user_id == user.id,
            Pledge.campaign_id == campaign.id,
            Pledge.status == PledgeStatus.ACTIVE,
            Pledge.parent_id.is_(None),
        )
    ):
        raise PledgeError(
            _l("You already back this campaign: change the amount of your pledge instead.")
        )


def start_pledge(
    campaign: Campaign,
    *,
    amount: Money,
    submission_key: str,
    user: User | None = None,
    guest_email: str | None = None,
    visibility: str = Visibility.ANONYMOUS,
    public_name: str = "",
    public_message: str = "",
    private_message: str = "",
    every_period: bool = False,
    until: datetime | None = None,
) -> tuple[Pledge, bool]:
    """Create a pending pledge and its provider setup. Returns (pledge, created).

    A repeated submission of the same form returns the pledge it already made.
    """
    existing = db.session.scalar(select(Pledge).where(Pledge.submission_key == submission_key))
    if existing is not None:
        return existing, False
    _refuse_new_pledge_problems(
        campaign, amount, user, guest_email, visibility, public_name, every_period
    )
    recurring = campaign.recurrence is not None
    public_id = new_public_id()
    pledge = Pledge(
        public_id=public_id,
        provider_customer_id=get_backend().create_customer(public_id),
        submission_key=submission_key,
        campaign_id=campaign.id,
        user_id=user.id if user else None,
        guest_email=None if user else guest_email,
        amount=amount.amount,
        currency=amount.currency,
        visibility=visibility,
        public_name="" if visibility == Visibility.ANONYMOUS else public_name.strip(),
        public_message=public_message.strip(),
        private_message=private_message.strip(),
        locale=current_locale(),
        backend=get_backend().name,
        recurring=recurring,
        recurring_until=until if recurring else None,
    )
    lifecycle.begin(pledge)
    return pledge, True


def save_simulated_card(pledge: Pledge, card_number: str) -> None:
    """The demo's stand-in for Stripe.js: the card goes to the simulated provider
    directly, and the answer is applied as the provider's form would have it."""
    session = start_card_setup(pledge)
    try:
        saved = enter_simulated_card(session.setup_id, card_number)
    except CardError as exc:
        raise PledgeError(
            _l(
                "Your card was declined (%(code)s). Nothing was saved; try another card.",
                code=exc.code,
            ),
            "card_number",
        ) from None
    card_saved(pledge, saved)


CARD_STATUSES = (
    PledgeStatus.PENDING,
    PledgeStatus.ACTIVE,
    PledgeStatus.FAILED,
    PledgeStatus.NEEDS_AUTHENTICATION,
)


def needs_card(pledge: Pledge) -> bool:
    """Whether the supporter may (re)enter a card now."""
    if pledge.status in (PledgeStatus.PENDING, PledgeStatus.ACTIVE):
        return accepting_pledges(pledge.campaign)
    if pledge.status in (PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION):
        return pledge.retry_until is None or pledge.retry_until > utcnow()
    return False


def start_card_setup(pledge: Pledge):
    """A fresh SetupIntent for saving (or replacing) the pledge's card."""
    if pledge.status not in CARD_STATUSES:
        raise PledgeError(_l("This pledge no longer needs a card."))
    session = get_backend().start_setup(pledge.public_id, pledge.provider_customer_id or "")
    pledge.provider_setup_id = session.setup_id
    db.session.flush()
    return session


def card_saved(pledge: Pledge, saved: SavedCard) -> bool:
    """Record how saving the card went; activates a pending pledge. Safe to replay."""
    if saved.status != "succeeded":
        if pledge.status == PledgeStatus.PENDING:
            lifecycle.note(
                pledge.id,
                "card_not_saved",
                amount=pledge.amount,
                detail=saved.decline_code or saved.status,
            )
            db.session.flush()
        return False
    if pledge.status != PledgeStatus.PENDING:
        return pledge.status == PledgeStatus.ACTIVE  # a replay: nothing to do
    card = {
        "provider_payment_method_id": saved.payment_method_id,
        "card_brand": saved.brand[:20],
        "card_last4": saved.last4[:4],
        "card_tag": card_tag(saved.fingerprint),
        "activated_at": utcnow(),
    }
    # The email first: from the activation on, rows every pledge to this campaign
    # writes (its totals, its day's total) stay locked until the commit, and in a
    # surge all the other pledges wait for them.
    emails.confirmation(pledge)
    lifecycle.move_or_raise(pledge, "activated", values=card)
    adjust_totals(pledge.campaign, pledge.amount, 1)
    signals.pledge_activated.send(pledge)
    return True


def card_replaced(pledge: Pledge, saved: SavedCard) -> str | None:
    """An active pledge got a new card. Returns the old card's id, for the caller to
    release after commit (a rollback must not leave the pledge without a card)."""
    if saved.status != "succeeded":
        raise PledgeError(_l("That card could not be saved."), "card")
    if saved.payment_method_id == pledge.provider_payment_method_id:
        return None  # a replay
    if pledge.status not in CARD_REPLACEABLE:
        raise too_late(pledge)
    old = pledge.provider_payment_method_id
    _update_while(pledge, CARD_REPLACEABLE, provider_payment_method_id=saved.payment_method_id)
    if pledge.status in (PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION):
        # A fixed card after a decline: retry at once instead of at the window's end.
        pledge.retry_requested = True
        if pledge.status == PledgeStatus.NEEDS_AUTHENTICATION:
            lifecycle.move_or_raise(pledge, "card_replaced_for_retry")
    pledge.card_brand, pledge.card_last4 = saved.brand[:20], saved.last4[:4]
    pledge.card_tag = card_tag(saved.fingerprint)
    lifecycle.note(pledge.id, "card_replaced", amount=pledge.amount)
    db.session.flush()
    return old


# What a supporter may still do to a pledge, by its state. A page left open across
# the deadline submits its form late: every action re-checks here, and the guarded
# UPDATE that performs it re-checks in the database.
CANCELLABLE = (PledgeStatus.PENDING, PledgeStatus.ACTIVE, PledgeStatus.PAUSED)
AMOUNT_CHANGEABLE = (PledgeStatus.ACTIVE,)
CARD_REPLACEABLE = (PledgeStatus.ACTIVE, PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION)


def can_cancel(pledge: Pledge) -> bool:
    """Whether the manage page offers "Cancel my pledge": before settlement, while the
    campaign takes pledges or is suspended (supporters can always step back then)."""
    return pledge.status in CANCELLABLE and (
        accepting_pledges(pledge.campaign) or pledge.campaign.status == CampaignStatus.SUSPENDED
    )


def too_late(pledge: Pledge) -> PledgeError:
    """Why an action on this pledge is no longer possible, in the supporter's words."""
    status = pledge.status
    if status == PledgeStatus.CHARGED:
        when = pledge.charged_at.strftime("%Y-%m-%d") if pledge.charged_at else ""
        return PledgeError(_l("This pledge was charged on %(d)s; see your receipt.", d=when))
    if status == PledgeStatus.CHARGING:
        return PledgeError(
            _l(
                "The campaign was funded and this pledge is being charged now; it can no "
                "longer be changed or cancelled."
            )
        )
    if status in (PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION):
        return PledgeError(
            _l(
                "The campaign was funded and its deadline has passed, so this pledge can no "
                "longer be changed or cancelled. If you do not update your card, it will "
                "not be charged."
            )
        )
    if status == PledgeStatus.RELEASED:
        return PledgeError(_l("This pledge was released: nothing was charged."))
    if status == PledgeStatus.REFUNDED:
        return PledgeError(_l("This pledge was charged and then refunded."))
    if status == PledgeStatus.DROPPED:
        return PledgeError(_l("This pledge could not be collected; nothing was charged."))
    if status == PledgeStatus.CANCELLED:
        return PledgeError(_l("This pledge is cancelled."))
    return PledgeError(_l("This campaign is not taking pledges any more."))


def _update_while(pledge: Pledge, allowed, **values) -> None:
    """One guarded UPDATE: the pledge changes only while the database still has it in
    one of the `allowed` states; otherwise (a stale page: settlement has it now) the
    supporter is told why, and nothing changes."""
    moved = changed(
        update(Pledge)
        .where(Pledge.id == pledge.id, Pledge.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if moved != 1:
        db.session.refresh(pledge, ["status", "charged_at", "amount"])
        raise too_late(pledge)
    for name, value in values.items():
        set_committed_value(pledge, name, value)


def change_amount(pledge: Pledge, amount: Money) -> None:
    if pledge.status not in AMOUNT_CHANGEABLE:
        raise too_late(pledge)
    check_amount(pledge.campaign, amount)
    if amount.amount == pledge.amount:
        return
    previous = pledge.amount
    _update_while(pledge, AMOUNT_CHANGEABLE, amount=amount.amount)
    adjust_totals(pledge.campaign, amount.amount - previous, 0)
    lifecycle.note(
        pledge.id, "amount_changed", amount=amount.amount, detail=f"{previous}->{amount.amount}"
    )
    db.session.flush()
    emails.amount_changed(pledge, Money(previous, pledge.currency))


def cancel(pledge: Pledge) -> bool:
    """Cancel a pledge that has not been charged; refused once settlement has it.
    Returns False when it was cancelled already (another tab, a replayed form)."""
    if pledge.status == PledgeStatus.CANCELLED:
        return False
    if pledge.status not in CANCELLABLE:
        raise too_late(pledge)
    was = lifecycle.move_pledge(pledge, "cancelled", values={"cancelled_at": utcnow()})
    if was is None:
        db.session.refresh(pledge, ["status", "charged_at", "amount"])
        if pledge.status == PledgeStatus.CANCELLED:
            return False  # cancelled meanwhile, from another tab: done
        raise too_late(pledge)
    if was == PledgeStatus.ACTIVE:
        adjust_totals(pledge.campaign, -pledge.amount, -1)
    signals.pledge_cancelled.send(pledge)
    return True


def pause(pledge: Pledge) -> None:
    """A standing pledge stops counting from the next period decided (the running one,
    if it has not ended): no period charges it until it is resumed."""
    if not pledge.recurring:
        raise PledgeError(_l("Only a pledge made for every period can be paused."))
    if pledge.status == PledgeStatus.PAUSED:
        return
    if lifecycle.move_pledge(pledge, "paused") is None:
        db.session.refresh(pledge, ["status", "charged_at", "amount"])
        raise too_late(pledge)
    adjust_totals(pledge.campaign, -pledge.amount, -1)


def resume(pledge: Pledge) -> None:
    """A paused standing pledge counts again, from the period running now."""
    if pledge.status == PledgeStatus.ACTIVE:
        return
    if lifecycle.move_pledge(pledge, "resumed") is None:
        db.session.refresh(pledge, ["status", "charged_at", "amount"])
        raise too_late(pledge)
    adjust_totals(pledge.campaign, pledge.amount, 1)


def manage_url(pledge: Pledge, external: bool = False) -> str:
    """The pledge's page: a bare path, or (for emails) an absolute URL on PUBLIC_URL."""
    if external:
        return emails.manage_link(pledge)
    key = manage_key(pledge.public_id, pledge.user_id, pledge.link_version)
    return url_for("payments.manage", key=key)


# Pledges that backed the campaign, whatever settlement did with them since: shown on
# its page as their supporters chose, before and after the deadline.
BACKED = (
    PledgeStatus.ACTIVE,
    PledgeStatus.PAUSED,
    PledgeStatus.CHARGING,
    PledgeStatus.CHARGED,
    PledgeStatus.FAILED,
    PledgeStatus.NEEDS_AUTHENTICATION,
    PledgeStatus.DROPPED,
    PledgeStatus.RELEASED,
    PledgeStatus.REFUNDED,
    PledgeStatus.DISPUTED,
)


def backers_of(campaign_id: int) -> list[Pledge]:
    """Every pledge that backed the campaign, oldest first (the committee's list)."""
    return list(
        db.session.scalars(
            select(Pledge)
            .where(
                Pledge.campaign_id == campaign_id,
                Pledge.status.in_(BACKED),
                Pledge.parent_id.is_(None),  # a period's charge is its standing pledge's
            )
            .order_by(Pledge.activated_at, Pledge.id)
        )
    )


def recent_supporters(campaign_id: int, limit: int = 30) -> list[Pledge]:
    return list(
        db.session.scalars(
            select(Pledge)
            .where(
                Pledge.campaign_id == campaign_id,
                Pledge.status.in_(BACKED),
                Pledge.parent_id.is_(None),
            )
            .order_by(Pledge.activated_at.desc(), Pledge.id.desc())
            .limit(limit)
        )
    )


def period_charges(pledge: Pledge) -> list[Pledge]:
    """A standing pledge's charges, one per period that met its threshold, newest first."""
    return list(
        db.session.scalars(
            select(Pledge).where(Pledge.parent_id == pledge.id).order_by(Pledge.period.desc())
        )
    )


def pledges_of(user: User) -> list[Pledge]:
    return list(
        db.session.scalars(
            select(Pledge)
            .where(
                Pledge.user_id == user.id,
                Pledge.status != PledgeStatus.PENDING,
                Pledge.parent_id.is_(None),
            )
            .order_by(Pledge.created_at.desc())
        )
    )
