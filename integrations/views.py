from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from core.api import limit_api
from integrations import openapi

bp = Blueprint("integrations", __name__)
api_bp = Blueprint("integrations_api", __name__, url_prefix="/api/v1")
limit_api(api_bp)


@api_bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi.document())


@bp.get("/api")
def reference():
    """The API's reference, rendered from the same document (no third-party assets)."""
    document = openapi.document()
    return render_template(
        "integrations/reference.html", document=document, schemas=document["components"]["schemas"]
    )
