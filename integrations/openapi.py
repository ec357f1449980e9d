"""The OpenAPI 3.1 document of Counterfund's API, served at /api/v1/openapi.json and
rendered at /api. tests/test_openapi.py fails when a route and this document disagree
(a route missing here, or a path here with no route), and schemathesis checks every
public endpoint's answers against it."""

from __future__ import annotations

from typing import Any

from flask import current_app

from campaigns.models import CampaignKind

CAMPAIGN_KINDS = [kind.value for kind in CampaignKind]

Schema = dict[str, Any]

NULLABLE_STRING: Schema = {"type": ["string", "null"]}
TIME: Schema = {"type": "string", "format": "date-time"}
URL: Schema = {"type": "string", "format": "uri"}
BASE64: Schema = {"type": "string", "contentEncoding": "base64"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name: str, item: Schema) -> Schema:
    return obj(
        {
            name: {"type": "array", "items": item},
            "next_cursor": NULLABLE_STRING,
            "next": {"type": ["string", "null"], "format": "uri"},
        }
    )


SCHEMAS: dict[str, Schema] = {
    "Money": obj(
        {"amount": {"type": "integer"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}
    ),
    "Problem": obj(
        {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}},
        {"detail": {"type": "string"}},
    ),
    "Campaign": obj(
        {
            "slug": {"type": "string"},
            "title": {"type": "string"},
            "summary": {"type": "string"},
            "kind": {"enum": CAMPAIGN_KINDS},
            "status": {"type": "string"},
            "language": {"type": "string"},
            "funding_model": {"enum": ["all_or_nothing", "flexible"]},
            "goal": ref("Money"),
            "pledged": ref("Money"),
            "backers": {"type": "integer", "minimum": 0},
            "min_backers": {"type": ["integer", "null"]},
            "deadline": TIME,
            "url": URL,
        }
    ),
    "Recurring": obj(
        {
            "interval": {"enum": ["week", "month"]},
            "current_period": {"type": "integer"},
            "period_ends_at": TIME,
            "threshold": obj(
                {
                    "amount": {"oneOf": [ref("Money"), {"type": "null"}]},
                    "backers": {"type": ["integer", "null"]},
                }
            ),
            "ends_at": {"type": ["string", "null"], "format": "date-time"},
        }
    ),
    "Period": obj(
        {
            "period": {"type": "integer"},
            "starts_at": TIME,
            "ends_at": TIME,
            "status": {"enum": ["open", "met", "missed", "charged"]},
            "pledged": ref("Money"),
            "backers": {"type": "integer"},
            "collected": ref("Money"),
        }
    ),
    "Update": obj(
        {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "body": {"type": "string", "description": "Markdown, as the organizers wrote it"},
            "published_at": TIME,
            "url": URL,
        }
    ),
    "Supporter": obj(
        {
            "name": {**NULLABLE_STRING, "description": "null when the supporter is anonymous"},
            "message": NULLABLE_STRING,
            "since": {"type": "string", "format": "date"},
        }
    ),
    "Disbursement": obj(
        {
            "reference": {"type": "string"},
            "payee": {**NULLABLE_STRING, "description": "null for a batch (names private)"},
            "payees": {"type": "integer", "minimum": 1},
            "purpose": {"type": "string"},
            "amount": ref("Money"),
            "approved_at": {"type": ["string", "null"], "format": "date-time"},
            "receipt_url": URL,
            "commitment": {**NULLABLE_STRING, "description": "a batch's list root (hex)"},
        }
    ),
    "LedgerEntry": obj(
        {"index": {"type": "integer"}, "leaf": BASE64, "transaction": {"type": "object"}}
    ),
    "RoundCampaign": obj(
        {
            "slug": {"type": "string"},
            "match": {"type": "integer", "minimum": 0},
            "ledger_reference": NULLABLE_STRING,
        },
        {
            "contributions": {
                "type": "array",
                "items": obj(
                    {
                        "backer": {"type": "string"},
                        "amount": {"type": "integer", "minimum": 0},
                        "order": {"type": "integer", "minimum": 0},
                    }
                ),
            }
        },
    ),
    "Round": obj(
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "funder": {"type": "string"},
            "rule": {"enum": ["capped_match", "quadratic"]},
            "currency": {"type": "string"},
            "pool": ref("Money"),
            "parameters": {"type": "object"},
            "status": {"enum": ["open", "closed", "final"]},
            "opens_at": TIME,
            "closes_at": TIME,
            "account": {"type": "string"},
            "url": URL,
            "api_url": URL,
            "campaigns": {"type": "array", "items": ref("RoundCampaign")},
        }
    ),
}


def json_response(schema: Schema, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROBLEM = {"content": {"application/problem+json": {"schema": ref("Problem")}}}
ERRORS = {
    "400": {"description": "A parameter is malformed or out of range", **PROBLEM},
    "404": {"description": "Nothing public there", **PROBLEM},
    "414": {"description": "The request line is too long (the web server answers, not the API)"},
    "429": {"description": "Too many requests from this client", **PROBLEM},
}
TEXT = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


def query(name: str, schema: Schema, description: str = "") -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


PER_PAGE = query("per_page", {"type": "integer", "minimum": 1, "maximum": 100}, "items per page")
CURSOR = query("cursor", {"type": "string"}, "the next_cursor of the previous page")
BIG = 10**12
INDEX = {"type": "integer", "minimum": 0, "maximum": BIG}


def get(summary: str, ok: dict, parameters: list | None = None, tag: str = "campaigns") -> dict:
    return {
        "get": {
            "summary": summary,
            "tags": [tag],
            "parameters": parameters or [],
            "responses": {
                "200": ok,
                "304": {"description": "Not modified (If-None-Match)"},
                **ERRORS,
            },
        }
    }


def paths() -> dict:
    return {
        "/api/v1/campaigns": get(
            "Public campaigns: search, filter, sort; page numbers or a cursor",
            json_response(
                obj(
                    {
                        "campaigns": {"type": "array", "items": ref("Campaign")},
                        "per_page": {"type": "integer"},
                        "next": {"type": ["string", "null"], "format": "uri"},
                        "next_cursor": NULLABLE_STRING,
                    },
                    {
                        "page": {"type": "integer"},
                        "total": {"type": "integer"},
                        "previous": {"type": ["string", "null"], "format": "uri"},
                    },
                )
            ),
            [
                query("q", {"type": "string"}, "words to find, in any order"),
                query("kind", {"enum": CAMPAIGN_KINDS}),
                query("status", {"enum": ["live", "ended", "cancelled", "all"]}),
                query("sort", {"enum": ["relevance", "ending", "newest", "backers", "funded"]}),
                query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}),
                PER_PAGE,
                CURSOR,
            ],
        ),
        "/api/v1/campaigns/{slug}": get(
            "One campaign",
            json_response(
                {
                    "allOf": [
                        ref("Campaign"),
                        obj({"recurring": {"oneOf": [ref("Recurring"), {"type": "null"}]}}),
                    ]
                }
            ),
            [SLUG],
        ),
        "/api/v1/campaigns/{slug}/periods": get(
            "A recurring campaign's periods, oldest first",
            json_response(obj({"periods": {"type": "array", "items": ref("Period")}})),
            [SLUG],
        ),
        "/api/v1/campaigns/{slug}/updates": get(
            "The organizers' updates, newest first",
            json_response(page_of("updates", ref("Update"))),
            [SLUG, PER_PAGE, CURSOR],
        ),
        "/api/v1/campaigns/{slug}/supporters": get(
            "Supporters as they chose to appear, newest first (no amounts, no addresses)",
            json_response(page_of("supporters", ref("Supporter"))),
            [SLUG, PER_PAGE, CURSOR],
        ),
        "/api/v1/campaigns/{slug}/disbursements": get(
            "Approved disbursements with their receipts, newest first",
            json_response(page_of("disbursements", ref("Disbursement"))),
            [SLUG, PER_PAGE, CURSOR],
            tag="ledger",
        ),
        "/api/v1/ledger/checkpoint": get(
            "The latest signed checkpoint (C2SP tlog-checkpoint)", TEXT, tag="ledger"
        ),
        "/api/v1/ledger/key": get("The ledger's verifier key", TEXT, tag="ledger"),
        "/api/v1/ledger/entries": get(
            "Ledger entries start ≤ index < end (1,000 at most)",
            json_response(
                obj(
                    {
                        "tree_size": {"type": "integer"},
                        "entries": {"type": "array", "items": ref("LedgerEntry")},
                    }
                )
            ),
            [query("start", INDEX), query("end", INDEX)],
            tag="ledger",
        ),
        "/api/v1/ledger/proof/inclusion": get(
            "Inclusion proof of one entry in a tree size",
            json_response(
                obj(
                    {
                        "index": {"type": "integer"},
                        "size": {"type": "integer"},
                        "leaf": BASE64,
                        "leaf_hash": BASE64,
                        "root": BASE64,
                        "proof": {"type": "array", "items": BASE64},
                    }
                )
            ),
            [
                {"name": "index", "in": "query", "required": True, "schema": INDEX},
                query("size", {**INDEX, "minimum": 1}),
            ],
            tag="ledger",
        ),
        "/api/v1/ledger/proof/consistency": get(
            "Proof that a larger tree extends a smaller one",
            json_response(
                obj(
                    {
                        "first": {"type": "integer"},
                        "second": {"type": "integer"},
                        "first_root": BASE64,
                        "second_root": BASE64,
                        "proof": {"type": "array", "items": BASE64},
                    }
                )
            ),
            [
                {
                    "name": "first",
                    "in": "query",
                    "required": True,
                    "schema": {**INDEX, "minimum": 1},
                },
                query("second", {**INDEX, "minimum": 1}),
            ],
            tag="ledger",
        ),
        "/api/v1/rounds": get(
            "Matching rounds, with their parameters and matches",
            json_response(obj({"rounds": {"type": "array", "items": ref("Round")}})),
            tag="rounds",
        ),
        "/api/v1/rounds/{round_id}": get(
            "One matching round with every contribution that counts",
            json_response(ref("Round")),
            [
                {
                    "name": "round_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                }
            ],
            tag="rounds",
        ),
        "/api/v1/openapi.json": get("This document", json_response({"type": "object"}), tag="meta"),
        **organizer_paths(),
    }


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Counterfund API",
            "version": "1",
            "description": (
                "Everything public, without an account: campaigns, updates, supporters as "
                "they chose to appear, periods, matching rounds, the ledger with its signed "
                "checkpoints and proofs, disbursements. Public GETs allow every origin "
                "(CORS), carry an ETag (send If-None-Match for a 304) and a rate limit "
                "(X-RateLimit-* headers). Errors are application/problem+json (RFC 9457)."
            ),
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "servers": [{"url": current_app.config["PUBLIC_URL"]}],
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (account page, API tokens)",
                }
            },
        },
    }


BEARER: list[dict[str, list]] = [{"token": []}]
AUTH_ERRORS = {
    "401": {"description": "No usable token (missing, unknown, expired, revoked)", **PROBLEM},
    "403": {"description": "The token lacks the scope, or your role the right", **PROBLEM},
    "404": {"description": "Not on the committee of a campaign with that slug", **PROBLEM},
    "429": ERRORS["429"],
}


def organizer(summary: str, scope: str, ok: dict, code: str = "200", **more) -> dict:
    return {
        "summary": f"{summary} (scope {scope})",
        "tags": ["organizers"],
        "security": BEARER,
        "parameters": [SLUG, *more.pop("parameters", [])],
        "responses": {code: ok, **AUTH_ERRORS, **more.pop("responses", {})},
        **more,
    }


WEBHOOK = obj(
    {
        "id": {"type": "integer"},
        "url": URL,
        "events": {"type": "array", "items": {"type": "string"}},
        "created_at": TIME,
    },
    {"secret": {"type": "string", "description": "only when created: sign checks with it"}},
)
EVENTS = [
    "pledge.created",
    "pledge.cancelled",
    "campaign.funded",
    "campaign.failed",
    "campaign.settled",
    "ledger.entry",
    "update.published",
]


def organizer_paths() -> dict:
    base = "/api/v1/organizer/campaigns/{slug}"
    new_webhook = obj({"url": URL, "events": {"type": "array", "items": {"enum": EVENTS}}})
    return {
        f"{base}/backers": {
            "get": organizer(
                "Backers as they chose to appear, amounts, messages (never addresses)",
                "backers:read",
                json_response(obj({"backers": {"type": "array", "items": {"type": "object"}}})),
            )
        },
        f"{base}/settlement": {
            "get": organizer(
                "Settlement status and pledges by state",
                "settlement:read",
                json_response({"type": "object"}),
            )
        },
        f"{base}/webhooks": {
            "get": organizer(
                "The campaign's webhooks",
                "webhooks:manage",
                json_response(obj({"webhooks": {"type": "array", "items": WEBHOOK}})),
            ),
            "post": organizer(
                'Add a webhook: {"url", "events"}; the answer holds its secret',
                "webhooks:manage",
                json_response(WEBHOOK, "Created"),
                code="201",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": new_webhook}},
                },
                responses={
                    "400": ERRORS["400"],
                    "422": {"description": "Refused: the reason is in detail", **PROBLEM},
                },
            ),
        },
        f"{base}/webhooks/{{endpoint_id}}": {
            "delete": organizer(
                "Remove a webhook",
                "webhooks:manage",
                {"description": "Removed"},
                code="204",
                parameters=[
                    {
                        "name": "endpoint_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
            )
        },
    }
