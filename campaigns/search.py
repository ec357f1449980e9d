"""Full-text search over a campaign's title, summary, story and updates: words in any
order, stemmed in the campaign's language, ranked (title above summary above the
rest). The index is kept by database triggers (migration 5c1e0a7f2b31): a weighted,
GIN-indexed tsvector on PostgreSQL, an FTS5 table with the Porter stemmer on SQLite.
This module is the one place that reads it."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    column,
    false,
    func,
    literal,
    literal_column,
    text,
)

from campaigns.models import Campaign
from core.extensions import db

# The PostgreSQL configurations the migration indexes with (the same map).
PG_CONFIGS = (
    "arabic",
    "dutch",
    "english",
    "french",
    "german",
    "greek",
    "hindi",
    "indonesian",
    "italian",
    "portuguese",
    "simple",
    "spanish",
    "turkish",
)
# What the search index adds to the schema, outside the models (Alembic's comparison
# and autogenerate leave it alone).
INDEX_OBJECTS = ("campaign_search", "search_vector", "ix_campaigns_search_vector")

_WORD = re.compile(r"\w+", re.UNICODE)


def include_in_autogenerate(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (name and name.startswith(INDEX_OBJECTS))


def words(query: str) -> list[str]:
    """The words of a visitor's query: letters and digits only, so nothing in it is
    read as search syntax; at most 12, each at most 40 characters."""
    return [w[:40] for w in _WORD.findall(query.lower())][:12]


def matching(query: str) -> tuple[ColumnElement[bool], Any] | None:
    """A condition on Campaign for the query and a rank to order by (lower first);
    None for an empty query. A query with no words at all matches nothing."""
    if not query.strip():
        return None
    terms = words(query)
    if not terms:
        return false(), literal(0)
    if db.engine.dialect.name == "postgresql":
        return _postgresql(terms)
    return _sqlite(terms)


def _postgresql(terms: list[str]) -> tuple[Any, Any]:
    # Every word must match, under any of the languages' stemmers: one tsquery per
    # configuration, OR-ed, so the GIN index answers it.
    text_query = " ".join(terms)
    tsquery: Any = None
    for config in PG_CONFIGS:
        one = func.plainto_tsquery(literal_column(f"'{config}'::regconfig"), text_query)
        tsquery = one if tsquery is None else tsquery.op("||")(one)
    vector: Any = literal_column("campaigns.search_vector")
    return vector.op("@@")(tsquery), -func.ts_rank(vector, tsquery)


def _sqlite(terms: list[str]) -> tuple[Any, Any]:
    # FTS5: quoted terms joined by spaces must all match (in any column, any order).
    fts_query = " ".join('"' + term.replace('"', "") + '"' for term in terms)
    param: Any = bindparam("fts_query", fts_query)
    hits = text("SELECT rowid FROM campaign_search WHERE campaign_search MATCH :fts_query")
    rank = text(
        "(SELECT bm25(campaign_search, 10.0, 4.0, 1.0) FROM campaign_search"
        " WHERE campaign_search MATCH :fts_query AND rowid = campaigns.id)"
    )
    found = hits.bindparams(param).columns(column("rowid", Integer))
    return Campaign.id.in_(found), rank.bindparams(param)
