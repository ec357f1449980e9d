"""campaign full-text search

The index lives in the database and is kept by triggers, whoever writes a campaign or
an update (services, the demo loader, an operator's SQL): on PostgreSQL a weighted
tsvector column in the campaign's language (GIN-indexed), on SQLite an FTS5 table with
the Porter stemmer. campaigns/search.py reads them.

Revision ID: 5c1e0a7f2b31
Revises: da75b462dafc
Create Date: 2026-11-22 10:10:00
"""

from alembic import op

revision = "5c1e0a7f2b31"
down_revision = "da75b462dafc"
branch_labels = None
depends_on = None

# Campaign languages PostgreSQL stems; the others are indexed word for word.
PG_CONFIGS = {
    "ar": "arabic",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fr": "french",
    "hi": "hindi",
    "id": "indonesian",
    "it": "italian",
    "nl": "dutch",
    "pt": "portuguese",
    "pt-BR": "portuguese",
    "tr": "turkish",
}

_PG_CONFIG_CASE = (
    "CASE c.language "
    + " ".join(f"WHEN '{code}' THEN '{config}'" for code, config in PG_CONFIGS.items())
    + " ELSE 'simple' END"
)

PG_UP = f"""
ALTER TABLE campaigns ADD COLUMN search_vector tsvector;
CREATE INDEX ix_campaigns_search_vector ON campaigns USING gin (search_vector);

CREATE FUNCTION campaign_search_refresh(campaign integer) RETURNS void AS $$
  UPDATE campaigns AS c SET search_vector =
      setweight(to_tsvector(cfg.name, coalesce(c.title, '')), 'A')
   || setweight(to_tsvector(cfg.name, coalesce(c.summary, '')), 'B')
   || setweight(to_tsvector(cfg.name, coalesce(c.story, '') || ' ' || coalesce(
          (SELECT string_agg(u.title || ' ' || u.body, ' ')
             FROM campaign_updates u WHERE u.campaign_id = c.id), '')), 'C')
  FROM (SELECT ({_PG_CONFIG_CASE})::regconfig AS name FROM campaigns c WHERE c.id = campaign) AS cfg
  WHERE c.id = campaign;
$$ LANGUAGE sql;

CREATE FUNCTION campaigns_search_trigger() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME = 'campaigns' THEN
    PERFORM campaign_search_refresh(NEW.id);
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM campaign_search_refresh(OLD.campaign_id);
  ELSE
    PERFORM campaign_search_refresh(NEW.campaign_id);
  END IF;
  RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER campaigns_search AFTER INSERT OR UPDATE OF title, summary, story, language
  ON campaigns FOR EACH ROW EXECUTE FUNCTION campaigns_search_trigger();
CREATE TRIGGER campaign_updates_search AFTER INSERT OR UPDATE OR DELETE
  ON campaign_updates FOR EACH ROW EXECUTE FUNCTION campaigns_search_trigger();

SELECT campaign_search_refresh(id) FROM campaigns;
"""

PG_DOWN = """
DROP TRIGGER IF EXISTS campaign_updates_search ON campaign_updates;
DROP TRIGGER IF EXISTS campaigns_search ON campaigns;
DROP FUNCTION IF EXISTS campaigns_search_trigger();
DROP FUNCTION IF EXISTS campaign_search_refresh(integer);
DROP INDEX IF EXISTS ix_campaigns_search_vector;
ALTER TABLE campaigns DROP COLUMN IF EXISTS search_vector;
"""

# One row per campaign, rowid = campaign id: title, summary, and story with updates.
_SQLITE_ROWS = """
  INSERT INTO campaign_search (rowid, title, summary, body)
  SELECT c.id, coalesce(c.title, ''), coalesce(c.summary, ''),
         coalesce(c.story, '') || ' ' || coalesce(
           (SELECT group_concat(u.title || ' ' || u.body, ' ')
              FROM campaign_updates u WHERE u.campaign_id = c.id), '')
  FROM campaigns c"""

# Each trigger rebuilds its campaign's row from what is in the tables now (nothing, once
# the campaign is deleted).
_SQLITE_TRIGGERS = {
    "campaigns_search_insert": ("AFTER INSERT ON campaigns", "NEW.id"),
    "campaigns_search_update": ("AFTER UPDATE OF title, summary, story ON campaigns", "NEW.id"),
    "campaigns_search_delete": ("AFTER DELETE ON campaigns", "OLD.id"),
    "campaign_updates_search_insert": ("AFTER INSERT ON campaign_updates", "NEW.campaign_id"),
    "campaign_updates_search_update": ("AFTER UPDATE ON campaign_updates", "NEW.campaign_id"),
    "campaign_updates_search_delete": ("AFTER DELETE ON campaign_updates", "OLD.campaign_id"),
}

SQLITE_UP = [
    "CREATE VIRTUAL TABLE campaign_search USING fts5("
    "title, summary, body, tokenize = 'porter unicode61 remove_diacritics 2')",
    *(
        f"CREATE TRIGGER {name} {when} BEGIN"
        f" DELETE FROM campaign_search WHERE rowid = {campaign};"
        f"{_SQLITE_ROWS} WHERE c.id = {campaign}; END"
        for name, (when, campaign) in _SQLITE_TRIGGERS.items()
    ),
    _SQLITE_ROWS,
]

SQLITE_DOWN = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in reversed(_SQLITE_TRIGGERS)),
    "DROP TABLE IF EXISTS campaign_search",
]


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_UP)
    else:
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DOWN)
    else:
        for statement in SQLITE_DOWN:
            op.execute(statement)
