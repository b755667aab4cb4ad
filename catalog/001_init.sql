-- Catalog of corpora, runs and shards. Views over the shards are rebuilt by
-- mmdata.catalog after every commit, because they list the committed files.

CREATE TABLE corpora (
    name            VARCHAR PRIMARY KEY,
    recipe_text     VARCHAR NOT NULL,
    recipe_hash     VARCHAR NOT NULL,
    output          VARCHAR NOT NULL,
    schema_version  VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE SEQUENCE run_ids START 1;

CREATE TABLE runs (
    run_id          INTEGER PRIMARY KEY DEFAULT nextval('run_ids'),
    corpus          VARCHAR NOT NULL,
    recipe_hash     VARCHAR NOT NULL,
    executor        VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,          -- running | finished | failed | interrupted
    started_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at     TIMESTAMP,
    shards_written  INTEGER NOT NULL DEFAULT 0,
    error           VARCHAR
);

-- One row per file. A shard is done when its 'data' row is here: the resume marker.
CREATE TABLE shards (
    corpus          VARCHAR NOT NULL,
    layer           VARCHAR NOT NULL DEFAULT 'base',
    kind            VARCHAR NOT NULL,          -- data | rejects
    shard_index     INTEGER NOT NULL,
    path            VARCHAR NOT NULL,
    rows            BIGINT NOT NULL,
    bytes           BIGINT NOT NULL,
    sha256          VARCHAR NOT NULL,
    input_rows      BIGINT NOT NULL,
    run_id          INTEGER NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (corpus, layer, kind, shard_index)
);

-- Per shard and step (step_index -1 is the source), so totals stay exact across resumes.
CREATE TABLE stage_stats (
    corpus          VARCHAR NOT NULL,
    layer           VARCHAR NOT NULL DEFAULT 'base',
    shard_index     INTEGER NOT NULL,
    step_index      INTEGER NOT NULL,
    stage           VARCHAR NOT NULL,
    rows_in         BIGINT NOT NULL,
    rows_out        BIGINT NOT NULL,
    seconds         DOUBLE NOT NULL,
    run_id          INTEGER NOT NULL,
    PRIMARY KEY (corpus, layer, shard_index, step_index)
);

CREATE TABLE stage_drops (
    corpus          VARCHAR NOT NULL,
    layer           VARCHAR NOT NULL DEFAULT 'base',
    shard_index     INTEGER NOT NULL,
    step_index      INTEGER NOT NULL,
    stage           VARCHAR NOT NULL,
    unit            VARCHAR NOT NULL,          -- image | caption
    reason          VARCHAR NOT NULL,
    rows            BIGINT NOT NULL,
    run_id          INTEGER NOT NULL,
    PRIMARY KEY (corpus, layer, shard_index, step_index, unit, reason)
);

CREATE VIEW stage_summary AS
SELECT s.corpus, s.layer, s.step_index, s.stage,
       sum(s.rows_in) AS rows_in, sum(s.rows_out) AS rows_out,
       sum(s.rows_in) - sum(s.rows_out) AS rows_dropped, sum(s.seconds) AS seconds
FROM stage_stats s
GROUP BY ALL
ORDER BY s.corpus, s.layer, s.step_index;

CREATE VIEW drops_summary AS
SELECT corpus, layer, step_index, stage, unit, reason, sum(rows) AS rows
FROM stage_drops
GROUP BY ALL
ORDER BY corpus, layer, step_index, unit, rows DESC;
