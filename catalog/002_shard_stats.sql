-- Per-shard statistics recorded at commit, so counts and lookups never open every shard
-- (issue 18). NULL only for shards listed before this migration whose files could not be
-- read when it ran (mmdata.catalog backfills the rest from the files themselves).
ALTER TABLE shards ADD COLUMN captions BIGINT;
ALTER TABLE shards ADD COLUMN min_image_id VARCHAR;
ALTER TABLE shards ADD COLUMN max_image_id VARCHAR;

-- How the images/rejects views reach each corpus' files: 'glob' (one pattern whose
-- matches are joined to the listed paths: constant-size SQL, so a commit never rewrites
-- it), 'list' (paths written out: folders whose names hold glob characters), 'store'
-- (an object store: read through pyarrow on mmdata's own connections). The views are
-- rebuilt only when a row is added here, never per commit.
CREATE TABLE view_sources (
    corpus          VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,          -- data | rejects
    mode            VARCHAR NOT NULL,          -- glob | list | store
    pattern         VARCHAR NOT NULL,          -- the glob, or the folder
    PRIMARY KEY (corpus, kind, pattern)
);

-- Counts from the statistics: no shard file is opened.
CREATE VIEW corpus_stats AS
SELECT c.name AS corpus,
       count(s.path) FILTER (WHERE s.kind = 'data') AS shards,
       coalesce(sum(s.rows) FILTER (WHERE s.kind = 'data'), 0) AS images,
       coalesce(sum(s.captions) FILTER (WHERE s.kind = 'data'), 0) AS captions,
       coalesce(sum(s.rows) FILTER (WHERE s.kind = 'rejects'), 0) AS rejects,
       coalesce(sum(s.input_rows) FILTER (WHERE s.kind = 'data'), 0) AS input_rows,
       coalesce(sum(s.bytes), 0) AS bytes,
       count(s.path) FILTER (WHERE s.kind = 'data' AND s.captions IS NULL)
           AS shards_without_stats
FROM corpora c LEFT JOIN shards s ON s.corpus = c.name AND s.layer = 'base'
GROUP BY c.name
ORDER BY c.name;
