-- `mmdata retry`: one row per attempt (its run in `runs` has executor 'retry'), and one
-- row per rejected image the attempt tried. An attempt is applied when its status is
-- 'finished': its shards were switched in one transaction. 'interrupted' (the process
-- died) was settled by the next retry: 'finished' if the catalog already listed its
-- files, else nothing of it was applied. 'failed': it raised before the switch, nothing
-- applied (one that raised after the switch is 'finished', with its error).

CREATE TABLE retries (
    run_id             INTEGER PRIMARY KEY,   -- runs.run_id of the attempt
    corpus             VARCHAR NOT NULL,
    reasons            VARCHAR NOT NULL,      -- as asked, comma-separated (http_5xx: any 5xx)
    status             VARCHAR NOT NULL,      -- running | finished | failed | interrupted
    started_at         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at        TIMESTAMP,
    shards             INTEGER NOT NULL DEFAULT 0,  -- shards rewritten
    rows_tried         BIGINT NOT NULL DEFAULT 0,
    rows_recovered     BIGINT NOT NULL DEFAULT 0,   -- moved from rejects to images
    rows_failed_again  BIGINT NOT NULL DEFAULT 0,   -- still rejects (reason of this attempt)
    error              VARCHAR
);

CREATE TABLE retry_rows (
    run_id        INTEGER NOT NULL,
    corpus        VARCHAR NOT NULL,
    shard_index   INTEGER NOT NULL,
    image_id      VARCHAR NOT NULL,
    old_stage     VARCHAR NOT NULL,
    old_reason    VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,      -- ok (now in images) | rejected | error
    stage         VARCHAR,               -- the step that rejected it this time
    reason        VARCHAR,
    PRIMARY KEY (run_id, shard_index, image_id)
);
