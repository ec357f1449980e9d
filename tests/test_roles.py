"""The committee's role matrix (README, "Roles"), route by route."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from accounts.models import User
from campaigns.models import ROLE_PERMISSIONS, Campaign, Organizer, OrganizerRole, Permission
from core.extensions import db
from tests.factories import create_draft, csrf_token, register

ROUTES = {
    Permission.EDIT: ("GET", "/c/{slug}/edit"),
    Permission.POST_UPDATE: ("GET", "/c/{slug}/updates/new"),
    Permission.LAUNCH: ("POST", "/c/{slug}/launch"),
    Permission.CANCEL: ("POST", "/c/{slug}/cancel"),
    Permission.RECORD_DISBURSEMENT: ("GET", "/c/{slug}/disbursements/new"),
}


def _committee(app, role: OrganizerRole):
    owner = app.test_client()
    register(owner, email="owner@example.org", name="Owner")
    slug = create_draft(owner).headers["Location"].rsplit("/", 1)[-1]
    if role == OrganizerRole.OWNER:
        return owner, slug
    member = app.test_client()
    register(member, email="member@example.org", name="Member")
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
        user = db.session.scalar(select(User).where(User.email == "member@example.org"))
        db.session.add(Organizer(campaign_id=campaign.id, user_id=user.id, role=role))
        db.session.commit()
    return member, slug


@pytest.mark.parametrize("role", list(OrganizerRole))
@pytest.mark.parametrize("permission", list(ROUTES))
def test_each_role_reaches_exactly_its_routes(app, role, permission):
    client, slug = _committee(app, role)
    if permission == Permission.RECORD_DISBURSEMENT:  # money exists only once live
        with app.app_context():
            db.session.execute(update(Campaign).where(Campaign.slug == slug).values(status="live"))
            db.session.commit()
    method, path = ROUTES[permission]
    path = path.format(slug=slug)
    if method == "GET":
        response = client.get(path)
    else:
        token = csrf_token(client, f"/c/{slug}")
        response = client.post(path, data={"csrf_token": token})
    allowed = permission in ROLE_PERMISSIONS[role]
    if allowed:
        assert response.status_code in (200, 302), (role, permission, response.status_code)
    else:
        assert response.status_code == 403, (role, permission, response.status_code)
    with app.app_context():
        status = db.session.scalar(select(Campaign.status).where(Campaign.slug == slug))
    if not allowed:
        assert status in ("draft", "live")  # nothing changed
        assert status == ("live" if permission == Permission.RECORD_DISBURSEMENT else "draft")


def test_a_treasurer_sees_no_buttons_for_what_it_cannot_do(app):
    client, slug = _committee(app, OrganizerRole.TREASURER)
    page = client.get(f"/c/{slug}").get_data(as_text=True)
    assert f"/c/{slug}/edit" not in page
    assert f"/c/{slug}/launch" not in page
    assert f"/c/{slug}/cancel" not in page


def test_the_matrix_is_what_readme_says():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for permission in Permission:
        assert f"`{permission.value}`" in readme, permission
