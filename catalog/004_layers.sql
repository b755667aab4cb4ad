-- Layers (issue 21): columns added to an existing corpus by a layer recipe (`layer_of:`)
-- without rewriting its shards. A layer's files are listed in `shards` with
-- layer = <name> (kind 'data', one per base data shard, row for row), its statistics
-- in stage_stats/stage_drops with the same layer; the base views keep reading
-- layer = 'base' only. Each layer name gets a view `layer_<name>` (corpus, image_id,
-- its fields, status, reason) over its listed files, joined to the base with
-- USING (corpus, image_id).
CREATE TABLE layers (
    corpus          VARCHAR NOT NULL,          -- the base corpus (corpora.name)
    layer           VARCHAR NOT NULL,
    recipe_text     VARCHAR NOT NULL,
    recipe_hash     VARCHAR NOT NULL,
    output          VARCHAR NOT NULL,
    schema_version  VARCHAR NOT NULL,
    layer_schema    VARCHAR NOT NULL,          -- the layer file's columns and types, as text
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (corpus, layer)
);

-- Which layer a run wrote ('base': the corpus itself).
ALTER TABLE runs ADD COLUMN layer VARCHAR DEFAULT 'base';

-- The folders of a layer's files, next to the corpus' own (a layer's output differs
-- from its corpus' and from every other layer's, so (corpus, kind, pattern) stays a key).
ALTER TABLE view_sources ADD COLUMN layer VARCHAR DEFAULT 'base';
