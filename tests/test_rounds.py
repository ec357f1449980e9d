"""Matching rounds through their services, pages and API, on both databases: what
counts, one card as one backer, the pool and the matches on the ledger, curators,
and the verifier's `round` command recomputing a round from what is published."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from accounts.models import User
from campaigns.models import Campaign, Organizer
from core import clock
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from core.urls import public_request_context
from ledger.models import EntryKind
from ledger.services import LedgerError, balance, campaign_account, record, round_account
from payments.models import Pledge
from rounds import services
from rounds.models import EntryStatus, Round, RoundEntry
from tests.factories import (
    DEFAULT_PASSWORD,
    GOOD,
    add_pledges,
    campaign,
    make_campaign,
    past_deadline,
    register,
    run_sweep,
    submit,
)
from verifier.counterfund_verify import main as verify

# Luhn-valid numbers the simulated provider charges: each is a different card.
CARDS = [
    "5555555555554444",
    "4012888888881881",
    "6011111111111117",
    "3056930009020004",
    "4000056655665556",
    "5200828282828210",
]


def open_round(app, *campaign_ids, rule="quadratic", pool=1000_00, days=30, **params) -> int:
    """A round with its pool paid in and these campaigns accepted."""
    with app.app_context(), public_request_context():
        owner = User(email="funder@example.org", display_name="Funder", password_hash="x")
        db.session.add(owner)
        db.session.flush()
        round_ = services.open_round(
            owner,
            services.RoundDraft(
                name="Strike solidarity round",
                funder="Union of Bakers",
                description="",
                sources="",
                currency="EUR",
                rule=rule,
                opens_at=utcnow() - timedelta(hours=1),
                closes_at=utcnow() + timedelta(days=days),
                **params,
            ),
        )
        if pool:
            services.record_pool(round_, Money(pool, "EUR"), "transfer 2026-12-01 ref 4411")
        for campaign_id in campaign_ids:
            # Seeded campaigns have no organizer who applies: the entry goes in directly.
            entry = RoundEntry(round_id=round_.id, campaign_id=campaign_id)
            db.session.add(entry)
            db.session.flush()
            services.decide(round_, entry.id, accept=True)
        db.session.commit()
        return round_.id


def settle(app, *campaign_ids) -> None:
    for campaign_id in campaign_ids:
        past_deadline(app, campaign_id)
        run_sweep(app)
        assert campaign(app, campaign_id).status == "settled"


def after_close(app, round_id) -> None:
    with app.app_context():
        closes = db.session.get(Round, round_id).closes_at
    clock.freeze(closes + timedelta(minutes=1))


def finalise(app, round_id) -> dict[str, int]:
    with app.app_context(), public_request_context():
        found = services.finalise(db.session.get(Round, round_id))
        db.session.commit()
        return found


def round_document(client, round_id) -> dict:
    response = client.get(f"/api/v1/rounds/{round_id}")
    assert response.status_code == 200
    return response.get_json()


def slug_of(app, campaign_id) -> str:
    return campaign(app, campaign_id).slug


# ---- What counts ----------------------------------------------------------------------


def test_one_card_behind_ten_addresses_counts_as_one_backer(app, client):
    one_card = make_campaign(app, goal=10, days=5)
    many_cards = make_campaign(app, goal=10, days=5)
    add_pledges(app, one_card, [(GOOD, 10)] * 10)  # ten addresses, one card
    add_pledges(app, many_cards, [(CARDS[0], 10), (CARDS[1], 10)])
    with app.app_context():
        behind_one = list(db.session.scalars(select(Pledge).where(Pledge.campaign_id == one_card)))
        assert len({p.guest_email for p in behind_one}) == 10
        assert len({p.card_tag for p in behind_one}) == 1 and behind_one[0].card_tag
    round_id = open_round(app, one_card, many_cards, days=10)
    settle(app, one_card, many_cards)

    document = round_document(client, round_id)
    by_slug = {c["slug"]: c for c in document["campaigns"]}
    ten = by_slug[slug_of(app, one_card)]["contributions"]
    assert len(ten) == 10 and len({row["backer"] for row in ten}) == 1
    two = by_slug[slug_of(app, many_cards)]["contributions"]
    assert len({row["backer"] for row in two}) == 2
    # One backer brings no quadratic match, however many addresses: all to the other.
    assert by_slug[slug_of(app, one_card)]["match"] == 0
    assert by_slug[slug_of(app, many_cards)]["match"] == 1000_00
    text = json.dumps(document)
    assert "@" not in text and "pm_sim" not in text and "fp_sim" not in text


def test_only_charged_pledges_of_settled_campaigns_count(app, client):
    first, second = make_campaign(app, goal=10, days=5), make_campaign(app, goal=10, days=8)
    add_pledges(app, first, [(CARDS[0], 60), (CARDS[1], 60)])
    add_pledges(app, second, [(CARDS[2], 60), (CARDS[3], 60)])
    round_id = open_round(app, first, second, days=20)
    by_slug = lambda: {c["slug"]: c for c in round_document(client, round_id)["campaigns"]}  # noqa: E731
    assert all(not c["contributions"] and c["match"] == 0 for c in by_slug().values())
    settle(app, first)
    counted = by_slug()
    assert len(counted[slug_of(app, first)]["contributions"]) == 2
    assert counted[slug_of(app, first)]["match"] == 1000_00  # the only one with a raw match
    assert counted[slug_of(app, second)]["contributions"] == []
    settle(app, second)
    counted = by_slug()
    assert counted[slug_of(app, first)]["match"] == counted[slug_of(app, second)]["match"] == 500_00


def test_pledges_charged_outside_the_window_do_not_count(app, client):
    late = make_campaign(app, goal=10, days=5)
    add_pledges(app, late, [(CARDS[0], 60), (CARDS[1], 60)])
    round_id = open_round(app, late, days=2)  # closes before the campaign's deadline
    settle(app, late)
    [entry] = round_document(client, round_id)["campaigns"]
    assert entry["contributions"] == [] and entry["match"] == 0


# ---- Finalising -------------------------------------------------------------------------


def test_finalising_moves_each_match_from_the_pool_once(app, client):
    a, b = make_campaign(app, goal=10, days=5), make_campaign(app, goal=10, days=5)
    add_pledges(app, a, [(CARDS[0], 10), (CARDS[1], 10), (CARDS[2], 10), (CARDS[3], 10)])
    add_pledges(app, b, [(CARDS[4], 40), (CARDS[5], 10)])
    round_id = open_round(app, a, b, pool=1000_00, days=10)
    settle(app, a, b)
    with app.app_context():
        before = {cid: balance(campaign_account(cid), "EUR") for cid in (a, b)}
    with pytest.raises(services.RuleError):  # not before the round closes
        finalise(app, round_id)
    after_close(app, round_id)
    found = finalise(app, round_id)
    # raw a = 4 x 3 x 1000 = 12000, b = (√4000 + √1000)² - 5000 = 4000: 3:1
    assert found == {slug_of(app, a): 750_00, slug_of(app, b): 250_00}
    with app.app_context():
        assert balance(round_account(round_id), "EUR") == 0
        assert balance(campaign_account(a), "EUR") == before[a] + 750_00
        assert balance(campaign_account(b), "EUR") == before[b] + 250_00
    with pytest.raises(services.RuleError):
        finalise(app, round_id)  # a second click moves nothing
    with app.app_context(), pytest.raises(services.RuleError):  # a form left open, sent late
        services.record_pool(db.session.get(Round, round_id), Money(5_00, "EUR"), "late")
    document = round_document(client, round_id)
    assert document["status"] == "final"
    ledger_page = client.get(f"/c/{slug_of(app, a)}/ledger").get_data(as_text=True)
    assert "Matched by rounds" in ledger_page and "750.00" in ledger_page


def test_matches_never_take_more_than_the_pool_holds(app):
    a = make_campaign(app, goal=10, days=5)
    add_pledges(app, a, [(CARDS[0], 60), (CARDS[1], 60)])
    round_id = open_round(app, a, pool=0, days=10, rule="capped_match")
    settle(app, a)
    after_close(app, round_id)
    assert finalise(app, round_id) == {slug_of(app, a): 0}
    with app.app_context():
        assert balance(round_account(round_id), "EUR") == 0
        with pytest.raises(LedgerError):  # the ledger refuses a pool below zero
            record(
                EntryKind.ROUND_MATCH,
                campaign_id=a,
                reference="round-x",
                postings=[
                    (round_account(round_id), Money(-1, "EUR")),
                    (campaign_account(a), Money(1, "EUR")),
                ],
            )


def test_capped_match_in_charge_order_with_its_caps(app, client):
    a, b = make_campaign(app, goal=10, days=5), make_campaign(app, goal=10, days=6)
    add_pledges(app, a, [(CARDS[0], 50), (CARDS[0], 30), (CARDS[1], 20)])
    add_pledges(app, b, [(CARDS[2], 100)])
    round_id = open_round(
        app,
        a,
        b,
        rule="capped_match",
        pool=100_00,
        days=10,
        ratio_bp=10_000,
        cap_per_pledge=40_00,
        cap_per_backer=50_00,
        cap_per_campaign=60_00,
    )
    settle(app, a, b)
    # a: 40 (cap per pledge), 10 (the card's cap of 50), 10 (the campaign's cap of 60);
    # b, charged later: 40 (per pledge) of the 40 left in the pool.
    document = round_document(client, round_id)
    assert {c["slug"]: c["match"] for c in document["campaigns"]} == {
        slug_of(app, a): 60_00,
        slug_of(app, b): 40_00,
    }
    assert document["parameters"] == {
        "ratio_bp": 10_000,
        "per_pledge": 40_00,
        "per_backer": 50_00,
        "per_campaign": 60_00,
    }


# ---- The verifier ---------------------------------------------------------------------


def test_the_verifier_recomputes_a_final_round_against_the_ledger(app, client, tmp_path, capsys):
    a, b = make_campaign(app, goal=10, days=5), make_campaign(app, goal=10, days=5)
    add_pledges(app, a, [(CARDS[0], 10), (CARDS[1], 10), (CARDS[2], 10)])
    add_pledges(app, b, [(CARDS[3], 25), (CARDS[4], 5)])
    round_id = open_round(app, a, b, pool=333_33, days=10, max_share_bp=7000)
    settle(app, a, b)
    after_close(app, round_id)
    finalise(app, round_id)
    round_file, export_file = tmp_path / "round.json", tmp_path / "ledger.json"
    round_file.write_text(json.dumps(round_document(client, round_id)))
    export_file.write_bytes(client.get("/ledger/export.json").get_data())
    key = client.get("/api/v1/ledger/key").get_data(as_text=True).strip()
    checkpoint = tmp_path / "checkpoint.txt"
    checkpoint.write_text(client.get("/api/v1/ledger/checkpoint").get_data(as_text=True))
    args = ["round", str(round_file), "--export", str(export_file)]
    assert verify([*args, "--key", key, "--checkpoint", str(checkpoint)]) == 0, capsys.readouterr()
    assert "each match is its entry" in capsys.readouterr().out

    # Any published figure changed is caught.
    for tamper in (_raise_a_match, _drop_a_contribution, _raise_the_pool):
        document = json.loads(round_file.read_text())
        tamper(document)
        forged = tmp_path / f"{tamper.__name__}.json"
        forged.write_text(json.dumps(document))
        assert verify(["round", str(forged), "--export", str(export_file)]) == 1, tamper
        assert "FAILED" in capsys.readouterr().err


def _raise_a_match(document):
    document["campaigns"][0]["match"] += 1


def _drop_a_contribution(document):
    document["campaigns"][0]["contributions"].pop()


def _raise_the_pool(document):
    document["pool"]["amount"] += 100


# ---- Pages: opening, applying, curating -------------------------------------------------


def test_a_committee_opens_a_round_and_curates_applications(app, client):
    register(client, email="funder@example.org", name="Funder")
    response = submit(
        client,
        "/rounds/new",
        {
            "name": "Bakers' round",
            "funder": "Union of Bakers",
            "description": "For **bakers**.",
            "sources": "Union minutes https://example.org/minutes",
            "currency": "EUR",
            "rule": "quadratic",
            "opens_at": (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "closes_at": (utcnow() + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M"),
            "ratio_percent": "100",
            "max_share_percent": "50",
            "min_contribution": "1,00",
        },
        form_page="/rounds/new",
        headers={"Accept-Language": "de"},
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    round_id = int(response.headers["Location"].split("/")[2])
    with app.app_context():
        round_ = db.session.get(Round, round_id)
        assert (round_.max_share_bp, round_.min_contribution) == (5000, 100)
    response = submit(
        client,
        f"/rounds/{round_id}/pool",
        {"amount": "1.000,50", "receipt": "Überweisung 2026-12-01"},
        form_page=f"/rounds/{round_id}/manage",
        headers={"Accept-Language": "de"},
    )
    assert response.status_code == 302
    with app.app_context():
        assert balance(round_account(round_id), "EUR") == 1000_50

    # An organizer applies with their campaign; an outsider cannot curate.
    organizer = app.test_client()
    register(organizer, email="org2@example.org", name="Org")
    slug = _organizers_campaign(app, "org2@example.org")
    page = organizer.get(f"/rounds/{round_id}").get_data(as_text=True)
    assert "Apply with your campaign" in page
    with app.app_context():
        cid = db.session.scalar(select(Campaign.id).where(Campaign.slug == slug))
    response = submit(
        organizer,
        f"/rounds/{round_id}/apply",
        {"campaign": str(cid)},
        form_page=f"/rounds/{round_id}",
    )
    assert response.status_code == 302
    with app.app_context():
        [entry] = db.session.get(Round, round_id).entries
        entry_id = entry.id
    assert organizer.get(f"/rounds/{round_id}/manage").status_code == 403
    # A refusal needs a reason; then the owner accepts.
    response = submit(
        client,
        f"/rounds/{round_id}/entries/{entry_id}/refuse",
        {"reason": ""},
        form_page=f"/rounds/{round_id}/manage",
    )
    with app.app_context():
        assert db.session.get(Round, round_id).entries[0].status == EntryStatus.APPLIED
    submit(
        client,
        f"/rounds/{round_id}/entries/{entry_id}/accept",
        {},
        form_page=f"/rounds/{round_id}/manage",
    )
    with app.app_context():
        assert db.session.get(Round, round_id).entries[0].status == EntryStatus.ACCEPTED
    campaign_page = client.get(f"/c/{slug}").get_data(as_text=True)
    assert "Matched by Bakers" in campaign_page
    # The live estimate: with no backer yet, a quadratic round says how it works.
    assert "matching grows with the number of backers" in campaign_page


def _organizers_campaign(app, email) -> str:
    cid = make_campaign(app, goal=10, days=5)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        found = db.session.get(Campaign, cid)
        found.organizers.append(Organizer(user_id=user.id, role="owner"))
        db.session.commit()
        return found.slug


def test_the_estimate_speaks_of_a_new_backer(app, client):
    a, b = make_campaign(app, goal=10, days=5), make_campaign(app, goal=10, days=5)
    add_pledges(app, a, [(CARDS[0], 10), (CARDS[1], 10)])
    add_pledges(app, b, [(CARDS[2], 10), (CARDS[3], 10)])
    round_id = open_round(app, a, b, pool=100_00, days=10)
    with app.app_context(), public_request_context():
        round_ = db.session.get(Round, round_id)
        # Each has raw (2 x √1000)² - 2000 = 2000 and half the pool. A third backer of €5
        # gives a (√1000 + √1000 + √500)² - 2500 = 4828.4 against b's 2000, so
        # 10000 x 4828.4 / 6828.4 = 7071.1 of the pool: 2071 more than its 5000.
        gain = services.estimate(round_, db.session.get(Campaign, a), 500)
        assert gain == 2071


def test_a_refused_campaigns_committee_reads_the_reason(app, client):
    from core import outbox
    from tests.factories import mail_to

    register(client, email="org3@example.org", name="Org")
    slug = _organizers_campaign(app, "org3@example.org")
    round_id = open_round(app, days=10)
    with app.app_context(), public_request_context():
        cid = db.session.scalar(select(Campaign.id).where(Campaign.slug == slug))
        entry = RoundEntry(round_id=round_id, campaign_id=cid)
        db.session.add(entry)
        db.session.flush()
        round_ = db.session.get(Round, round_id)
        with pytest.raises(services.RuleError):
            services.decide(round_, entry.id, accept=False, reason="  ")
        services.decide(round_, entry.id, accept=False, reason="Not a labour campaign")
        with pytest.raises(services.RuleError):  # a second curator's late click
            services.decide(round_, entry.id, accept=True)
        db.session.commit()
        outbox.deliver_pending()
    [notice] = [m for m in mail_to(app, "org3@example.org") if "matching round" in m]
    assert "Not a labour campaign" in notice
    assert "Matched by" not in client.get(f"/c/{slug}").get_data(as_text=True)


def test_a_round_owner_cannot_close_their_account_until_it_is_final(app, client):
    register(client, email="funder2@example.org", name="Funder")
    response = submit(
        client,
        "/rounds/new",
        {
            "name": "Council round",
            "funder": "City council",
            "currency": "EUR",
            "rule": "capped_match",
            "opens_at": (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "closes_at": (utcnow() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"),
            "ratio_percent": "100",
        },
        form_page="/rounds/new",
    )
    assert response.status_code == 302
    exported = json.loads(client.get("/account/export.json").get_data(as_text=True))
    assert [s["role"] for s in exported["matching_round_committees"]] == ["owner"]
    refused = submit(
        client,
        "/account/close",
        {
            "close-current_password": DEFAULT_PASSWORD,
            "close-confirm": "y",
            "close-submit": "Close my account",
        },
        form_page="/account",
    )
    assert refused.status_code == 422
    assert "which is not final yet" in refused.get_data(as_text=True)


def _round_form(**overrides) -> dict:
    return {
        "name": "A round",
        "funder": "A funder",
        "currency": "EUR",
        "rule": "capped_match",
        "opens_at": (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "closes_at": (utcnow() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"),
        "ratio_percent": "100",
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cap_per_pledge": "12,50"}, "12.5"),  # an English visitor's comma: refused, explained
        ({"cap_per_pledge": "1e5"}, ""),
        ({"cap_per_campaign": "99999999999999999999999"}, ""),
        ({"min_contribution": "-5"}, ""),
        (
            {
                "opens_at": (utcnow() - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"),
                "closes_at": (utcnow() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
            },
            "past",
        ),
        ({"opens_at": (utcnow() + timedelta(days=9)).strftime("%Y-%m-%dT%H:%M")}, "after it opens"),
        ({"ratio_percent": "0"}, ""),
        ({"sources": "Evil javascript:alert(1)"}, "http"),
        ({"rule": "winner_takes_all"}, ""),
        ({"name": "\u202e\u0000"}, ""),  # nothing left once bidi and control characters go
    ],
)
def test_a_bad_round_form_gets_a_clear_error_and_opens_nothing(app, client, overrides, message):
    register(client, email="funder3@example.org", name="Funder")
    response = submit(client, "/rounds/new", _round_form(**overrides), form_page="/rounds/new")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page and message in page
    with app.app_context():
        assert db.session.scalar(select(Round.id)) is None


def test_single_line_fields_are_cleaned_and_pool_amounts_read_in_the_visitors_language(app, client):
    register(client, email="funder4@example.org", name="Funder")
    response = submit(
        client,
        "/rounds/new",
        _round_form(name="Bakers\u202e round\u0007", funder="Co-op\u200b"),
        form_page="/rounds/new",
    )
    assert response.status_code == 302
    round_id = int(response.headers["Location"].split("/")[2])
    with app.app_context():
        round_ = db.session.get(Round, round_id)
        assert (round_.name, round_.funder) == ("Bakers round", "Co-op")
    manage = f"/rounds/{round_id}/manage"
    recorded = 0
    for typed, language, minor in (("1.000,50", "de", 1000_50), ("12,50", "pt-BR", 12_50)):
        response = submit(
            client,
            f"/rounds/{round_id}/pool",
            {"amount": typed, "receipt": "ref"},
            form_page=manage,
            headers={"Accept-Language": language},
        )
        assert response.status_code == 302, (typed, language)
        recorded += minor
        with app.app_context():
            assert balance(round_account(round_id), "EUR") == recorded
    refused = submit(
        client, f"/rounds/{round_id}/pool", {"amount": "12,50", "receipt": "ref"}, form_page=manage
    )
    assert refused.status_code == 422 and "12.5" in refused.get_data(as_text=True)
    with app.app_context():
        assert balance(round_account(round_id), "EUR") == 1000_50 + 12_50
        assert db.session.get(Round, round_id).pool_amount == 1000_50 + 12_50


def test_a_round_owner_invites_a_curator_who_joins_from_the_emailed_link(app, client):
    from tests.factories import link_in, mail_to

    register(client, email="owner@example.org", name="Owner")
    response = submit(client, "/rounds/new", _round_form(), form_page="/rounds/new")
    round_id = int(response.headers["Location"].split("/")[2])
    manage = f"/rounds/{round_id}/manage"
    invited = submit(
        client,
        f"/rounds/{round_id}/invite",
        {"email": "Curator@Example.org", "role": "curator"},
        form_page=manage,
    )
    assert invited.status_code == 302
    [letter] = [m for m in mail_to(app, "curator@example.org") if "committee" in m]
    link = link_in(letter, "/rounds/invitations/")
    # A forwarded link is useless to anyone else.
    stranger = app.test_client()
    register(stranger, email="stranger2@example.org", name="Stranger")
    submit(stranger, link, {}, form_page=link)
    assert stranger.get(manage).status_code == 403
    curator = app.test_client()
    register(curator, email="curator@example.org", name="Curator")
    assert submit(curator, link, {}, form_page=link).status_code == 302
    page = curator.get(manage)
    assert page.status_code == 200 and "Curator" in page.get_data(as_text=True)
    with app.app_context():
        round_ = db.session.get(Round, round_id)
        roles = {m.user.email: m.role for m in round_.members}
    assert roles == {"owner@example.org": "owner", "curator@example.org": "curator"}
    # A curator curates, but does not record the pool's money.
    refused = submit(
        curator, f"/rounds/{round_id}/pool", {"amount": "5", "receipt": "x"}, form_page=manage
    )
    assert refused.status_code == 403
