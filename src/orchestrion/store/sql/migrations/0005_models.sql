-- Models: the build history, audience memberships with their changes (an outbox of audience events), and the
-- canonical profile of every linked event, which models join on.
CREATE TABLE IF NOT EXISTS model_builds (
    build_id VARCHAR NOT NULL PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    mode VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    as_of TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    duration_seconds DOUBLE,
    rows_total BIGINT,
    rows_written BIGINT,
    watermark TIMESTAMPTZ,
    freshness_seconds DOUBLE,
    error VARCHAR,
    triggered_by VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS audience_memberships (
    audience VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    entered_at TIMESTAMPTZ NOT NULL,
    build_id VARCHAR NOT NULL,
    PRIMARY KEY (audience, profile_id)
);
CREATE TABLE IF NOT EXISTS audience_changes (
    message_id VARCHAR NOT NULL PRIMARY KEY,
    audience VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    change VARCHAR NOT NULL,
    build_id VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    emitted_at TIMESTAMPTZ
);
CREATE OR REPLACE VIEW event_profiles AS
SELECT
    l.seq,
    l.source,
    l.message_id,
    l."timestamp",
    coalesce(m.survivor_profile_id, l.profile_id) AS profile_id
FROM identity_links l
LEFT JOIN profile_merges m ON m.merged_profile_id = l.profile_id;
