"""Matching rounds: opening one, its committee, campaigns applying and being accepted,
the pool's money, the counted contributions, estimates and finalisation.

What counts (README, "Matching rounds"): pledges of accepted campaigns that were
charged within the round's window, once their campaign's settlement is done (status
settled), in the round's currency; one-off pledges only (recurring campaigns cannot
apply). A backer is one card per campaign (Pledge.card_tag), published only as a tag
keyed per round and campaign."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from accounts.models import User
from accounts.services import AccountError, find_user_by_email, normalise_email
from campaigns.models import Campaign, CampaignStatus, Permission, role_can
from campaigns.notifications import send_invitation, tell_committee
from core.clock import utcnow
from core.extensions import changed, db
from core.money import Money, validate_currency
from core.signed import make_token, read_token
from core.urls import public_url_for
from core.work import RuleError
from ledger import services as ledger
from ledger.models import EntryKind
from payments.models import Pledge, PledgeStatus
from payments.privacy import round_backer_tag
from rounds import rules
from rounds.models import (
    ENTRY_MACHINE,
    ROUND_MACHINE,
    ROUND_ROLE_LABELS,
    EntryStatus,
    Round,
    RoundEntry,
    RoundInvitation,
    RoundMember,
    RoundRole,
    RoundStatus,
    Rule,
)

INVITATION_MAX_AGE = 14 * 24 * 3600


@dataclass
class RoundDraft:
    name: str
    funder: str
    description: str
    sources: str
    currency: str
    rule: str
    opens_at: datetime
    closes_at: datetime
    ratio_bp: int = 10_000
    cap_per_pledge: int | None = None
    cap_per_backer: int | None = None
    cap_per_campaign: int | None = None
    max_share_bp: int | None = None
    min_contribution: int = 0


def source_links(text: str) -> list[tuple[str, str]]:
    """(title, url) per line of a round's sources; the URL is the line's last word."""
    links = []
    for line in (text or "").splitlines():
        words = line.split()
        if words:
            title = " ".join(words[:-1]) or words[-1]
            links.append((title, words[-1]))
    return links


def _check(draft: RoundDraft) -> None:
    validate_currency(draft.currency)
    if draft.rule not in set(Rule):
        raise RuleError(_l("Choose a rule."), "rule")
    if draft.closes_at <= draft.opens_at:
        raise RuleError(_l("A round closes after it opens."), "closes_at")
    if draft.closes_at <= utcnow():
        raise RuleError(_l("A round cannot close in the past."), "closes_at")
    for _title, url in source_links(draft.sources):
        if not url.lower().startswith(("http://", "https://")) or len(url) < 11:
            raise RuleError(
                _l("Each source ends with a link starting with http:// or https://."), "sources"
            )


def open_round(owner: User, draft: RoundDraft) -> Round:
    _check(draft)
    round_ = Round(**draft.__dict__, status=RoundStatus.OPEN)
    round_.members.append(RoundMember(user_id=owner.id, role=RoundRole.OWNER))
    db.session.add(round_)
    db.session.flush()
    return round_


def public_rounds() -> list[Round]:
    return list(db.session.scalars(select(Round).order_by(Round.closes_at.desc(), Round.id)))


# ---- The committee ------------------------------------------------------------------


def invite(round_: Round, inviter: User, email: str, role: str) -> None:
    """The same answer for every address: nothing tells whether it has an account."""
    if role not in (RoundRole.CURATOR, RoundRole.TREASURER):
        raise RuleError(_l("Choose curator or treasurer."), "role")
    try:
        email = normalise_email(email)
    except AccountError as exc:
        raise RuleError(exc.message, "email") from None
    member = find_user_by_email(email)
    if member is not None and round_.role_of(member) is not None:
        return
    invitation = RoundInvitation(round_id=round_.id, email=email, role=role, invited_by=inviter.id)
    db.session.add(invitation)
    db.session.flush()
    send_invitation(
        email,
        inviter,
        round_.name,
        str(ROUND_ROLE_LABELS[RoundRole(role)]),
        public_url_for("rounds.invitation", token=make_token("round-invite", {"i": invitation.id})),
    )


def invitation_from(token: str) -> RoundInvitation | None:
    data = read_token("round-invite", token, INVITATION_MAX_AGE)
    invitation = db.session.get(RoundInvitation, data.get("i"))
    if invitation is None or invitation.accepted_at is not None:
        return None
    return invitation


def accept_invitation(invitation: RoundInvitation, user: User) -> None:
    if user.email != invitation.email:
        raise RuleError(_l("This invitation was sent to another address."))
    invitation.accepted_at = utcnow()
    if invitation.round.role_of(user) is None:
        db.session.add(
            RoundMember(round_id=invitation.round_id, user_id=user.id, role=invitation.role)
        )
    db.session.flush()


# ---- Campaigns applying -------------------------------------------------------------


def eligible_campaigns(round_: Round, user: User) -> list[Campaign]:
    """The user's campaigns that may apply: they can edit it, it is live (or a draft),
    one-off, in the round's currency, and not applied yet."""
    applied = {entry.campaign_id for entry in round_.entries}
    rows = db.session.scalars(
        select(Campaign)
        .join(Campaign.organizers)
        .where(
            Campaign.organizers.any(user_id=user.id),
            Campaign.currency == round_.currency,
            Campaign.status.in_((CampaignStatus.DRAFT, CampaignStatus.LIVE)),
        )
        .order_by(Campaign.title)
    ).unique()
    return [
        c
        for c in rows
        if c.id not in applied
        and c.recurrence is None
        and role_can(c.role_of(user), Permission.EDIT)
    ]


def apply(round_: Round, campaign: Campaign, user: User) -> RoundEntry:
    if round_.public_status != RoundStatus.OPEN:
        raise RuleError(_l("This round no longer takes applications."), "campaign")
    if campaign not in eligible_campaigns(round_, user):
        raise RuleError(_l("That campaign cannot apply to this round."), "campaign")
    entry = RoundEntry(round_id=round_.id, campaign_id=campaign.id)
    db.session.add(entry)
    db.session.flush()
    return entry


def _entry(round_: Round, entry_id: int) -> RoundEntry:
    entry = db.session.get(RoundEntry, entry_id)
    if entry is None or entry.round_id != round_.id:
        raise RuleError(_l("That campaign has not applied to this round."))
    return entry


def decide(round_: Round, entry_id: int, *, accept: bool, reason: str = "") -> RoundEntry:
    """Curators accept or refuse an application (a refusal says why); the campaign's
    committee is told. Guarded: a second curator's late click changes nothing."""
    entry = _entry(round_, entry_id)
    if round_.status != RoundStatus.OPEN:
        raise RuleError(_l("This round is final."))
    if not accept and not reason.strip():
        raise RuleError(_l("Say why the campaign is refused."), "reason")
    target = EntryStatus.ACCEPTED if accept else EntryStatus.REFUSED
    moved = changed(
        update(RoundEntry)
        .where(
            RoundEntry.id == entry.id,
            RoundEntry.status.in_(ENTRY_MACHINE.sources_of(EntryStatus(target))),
        )
        .values(status=target, reason=reason.strip(), decided_at=utcnow())
    )
    if not moved:
        raise RuleError(_l("Another curator decided on this campaign already."))
    db.session.refresh(entry)
    tell_committee(
        entry.campaign,
        "round-accepted" if accept else "round-refused",
        round_name=round_.name,
        round_link=public_url_for("rounds.detail", round_id=round_.id),
        reason=entry.reason,
    )
    return entry


def rounds_of_campaign(campaign: Campaign) -> list[RoundEntry]:
    """The rounds that accepted this campaign."""
    return list(
        db.session.scalars(
            select(RoundEntry).where(
                RoundEntry.campaign_id == campaign.id, RoundEntry.status == EntryStatus.ACCEPTED
            )
        )
    )


# ---- The pool -------------------------------------------------------------------------


def record_pool(round_: Round, amount: Money, receipt: str) -> None:
    """Money the funder paid into the pool: on the ledger, from outside into the
    round's account, with the receipt in the memo."""
    if round_.status != RoundStatus.OPEN:
        raise RuleError(_l("This round is final."), "amount")
    if amount.currency != round_.currency or amount.amount <= 0:
        raise RuleError(_l("Give an amount above zero in the round's currency."), "amount")
    ledger.record(
        EntryKind.ROUND_POOL,
        campaign_id=None,
        reference=f"round-{round_.id}-pool-{secrets.token_hex(6)}",
        counterparty=round_.funder,
        memo=f"Round {round_.id} pool ({round_.name}); receipt: {receipt.strip()}",
        postings=[(ledger.FUNDERS, -amount), (ledger.round_account(round_.id), amount)],
    )
    changed(
        update(Round)
        .where(Round.id == round_.id)
        .values(pool_amount=Round.pool_amount + amount.amount)
    )
    db.session.refresh(round_)


# ---- What counts, and the matches -------------------------------------------------------


@dataclass(frozen=True)
class Contribution:
    campaign: str  # slug
    backer: str  # tag, per round and campaign
    amount: int
    order: int  # position in charge order across the round (capped_match needs it)


def contributions(round_: Round) -> list[Contribution]:
    """The charged pledges that count, in charge order."""
    accepted = {e.campaign_id: e.campaign for e in round_.accepted}
    if not accepted:
        return []
    rows = db.session.scalars(
        select(Pledge)
        .join(Campaign, Campaign.id == Pledge.campaign_id)
        .where(
            Pledge.campaign_id.in_(accepted),
            Pledge.status == PledgeStatus.CHARGED,
            Pledge.parent_id.is_(None),
            Pledge.currency == round_.currency,
            Pledge.charged_at >= round_.opens_at,
            Pledge.charged_at < round_.closes_at,
            Campaign.status == CampaignStatus.SETTLED,
        )
        .order_by(Pledge.charged_at, Pledge.id)
    )
    return [
        Contribution(
            campaign=accepted[p.campaign_id].slug,
            backer=round_backer_tag(round_.id, p),
            amount=p.charged_amount or 0,
            order=position,
        )
        for position, p in enumerate(rows)
    ]


def compute(round_: Round, counted: list[Contribution], pool: int | None = None) -> dict[str, int]:
    """Each accepted campaign's match under the round's rule (0 for those with none)."""
    pool = round_.pool_amount if pool is None else pool
    slugs = [e.campaign.slug for e in round_.accepted]
    if round_.rule == Rule.QUADRATIC:
        by_campaign: dict[str, list[tuple[str, int]]] = {slug: [] for slug in slugs}
        for c in counted:
            by_campaign.setdefault(c.campaign, []).append((c.backer, c.amount))
        found = rules.quadratic_matches(
            by_campaign,
            pool,
            max_share_bp=round_.max_share_bp,
            min_contribution=round_.min_contribution or 0,
        )
    else:
        found = rules.capped_matches(
            [(c.campaign, c.backer, c.amount) for c in sorted(counted, key=lambda c: c.order)],
            pool,
            ratio_bp=round_.ratio_bp,
            per_pledge=round_.cap_per_pledge,
            per_backer=round_.cap_per_backer,
            per_campaign=round_.cap_per_campaign,
        )
    return {slug: found.get(slug, 0) for slug in slugs}


def matches(round_: Round, counted: list[Contribution] | None = None) -> dict[str, int]:
    """Final matches once final; until then, what the rule gives for what counts now
    (`counted`: the round's contributions, when the caller has them already)."""
    if round_.status == RoundStatus.FINAL:
        return {e.campaign.slug: e.match_amount or 0 for e in round_.accepted}
    return compute(round_, contributions(round_) if counted is None else counted)


def _projected(round_: Round) -> list[Contribution]:
    """What counts now plus the accepted campaigns' live pledges, as if charged."""
    counted = contributions(round_)
    live = {e.campaign_id: e.campaign for e in round_.accepted if e.campaign.is_live}
    if not live:
        return counted
    rows = db.session.scalars(
        select(Pledge)
        .where(
            Pledge.campaign_id.in_(live),
            Pledge.status == PledgeStatus.ACTIVE,
            Pledge.parent_id.is_(None),
        )
        .order_by(Pledge.activated_at, Pledge.id)
    )
    start = len(counted)
    return counted + [
        Contribution(live[p.campaign_id].slug, round_backer_tag(round_.id, p), p.amount, start + i)
        for i, p in enumerate(rows)
    ]


def estimate(round_: Round, campaign: Campaign, amount: int) -> int:
    """About how much more match a new backer's pledge of `amount` would bring this
    campaign, from the state as it stands (live pledges counted as if charged)."""
    projected = _projected(round_)
    before = compute(round_, projected).get(campaign.slug, 0)
    newcomer = Contribution(campaign.slug, "estimate-newcomer", amount, len(projected))
    after = compute(round_, [*projected, newcomer]).get(campaign.slug, 0)
    return max(0, after - before)


def unsettled(round_: Round) -> list[Campaign]:
    """Accepted campaigns whose settlement is not done: nothing of theirs counts yet."""
    return [e.campaign for e in round_.accepted if e.campaign.status != CampaignStatus.SETTLED]


def finalise(round_: Round) -> dict[str, int]:
    """Move each campaign's match from the pool to the campaign, one ledger transaction
    each, after the round closed. Guarded: a second click finalises nothing."""
    if round_.closes_at > utcnow():
        raise RuleError(_l("A round is finalised after it closes."))
    moved = changed(
        update(Round)
        .where(
            Round.id == round_.id,
            Round.status.in_(ROUND_MACHINE.sources_of(RoundStatus.FINAL)),
        )
        .values(status=RoundStatus.FINAL, finalised_at=utcnow())
    )
    if not moved:
        raise RuleError(_l("This round is final already."))
    db.session.refresh(round_)
    found = compute(round_, contributions(round_))
    pool_left = ledger.balance(ledger.round_account(round_.id), round_.currency)
    if sum(found.values()) > pool_left:
        raise RuleError(_l("The matches add up to more than the pool holds."))
    entries = []
    for entry in round_.accepted:
        entry.match_amount = found[entry.campaign.slug]
        if entry.match_amount:
            money = Money(entry.match_amount, round_.currency)
            entries.append(
                ledger.Entry(
                    EntryKind.ROUND_MATCH,
                    entry.campaign_id,
                    match_reference(round_, entry.campaign_id),
                    (
                        (ledger.round_account(round_.id), -money),
                        (ledger.campaign_account(entry.campaign_id), money),
                    ),
                    counterparty=round_.funder,
                    memo=f"Round {round_.id} ({round_.name}): {round_.rule} match",
                )
            )
    if entries:
        ledger.record_many(entries)
    db.session.flush()
    return found


def match_reference(round_: Round, campaign_id: int) -> str:
    return f"round-{round_.id}-match-{campaign_id}"
