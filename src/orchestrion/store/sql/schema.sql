-- The whole current schema for a fresh install. Every migration must bring an older database to exactly
-- this; tests/integration/test_migrations.py proves it on each backend.
CREATE SEQUENCE IF NOT EXISTS events_seq;
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT NOT NULL DEFAULT nextval('events_seq'),
    source VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    event VARCHAR,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    "timestamp" TIMESTAMPTZ NOT NULL,
    original_timestamp TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    payload JSON NOT NULL
);
CREATE TABLE IF NOT EXISTS message_ids (
    source VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, message_id)
);
CREATE SEQUENCE IF NOT EXISTS quarantine_seq;
CREATE TABLE IF NOT EXISTS quarantine (
    id BIGINT NOT NULL DEFAULT nextval('quarantine_seq'),
    source VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    batch_index INTEGER NOT NULL,
    message_id VARCHAR,
    event VARCHAR,
    reasons JSON NOT NULL,
    raw JSON NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    replayed_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS landing_columns (
    table_name VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    json_path VARCHAR NOT NULL,
    data_type VARCHAR NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (table_name, column_name)
);
CREATE TABLE IF NOT EXISTS landing_events (
    event VARCHAR NOT NULL PRIMARY KEY,
    table_name VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS contract_versions (
    event_type VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    schema_hash VARCHAR NOT NULL,
    definition JSON NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_type, name, version)
);
CREATE TABLE IF NOT EXISTS process_checkpoints (
    name VARCHAR NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_links (
    seq BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    identifiers JSON NOT NULL,
    alias JSON,
    profile_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_unlinks (
    unlink_id VARCHAR NOT NULL PRIMARY KEY,
    identifier VARCHAR NOT NULL,
    separated_from JSON NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_graph (
    identifier_type VARCHAR NOT NULL,
    identifier_value VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    attached_at TIMESTAMPTZ NOT NULL,
    message_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    PRIMARY KEY (identifier_type, identifier_value)
);
CREATE TABLE IF NOT EXISTS profile_merges (
    merged_profile_id VARCHAR NOT NULL PRIMARY KEY,
    survivor_profile_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    message_id VARCHAR,
    merged_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_refusals (
    source VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    identifier_type VARCHAR NOT NULL,
    identifier_value VARCHAR NOT NULL,
    code VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    profile_id VARCHAR NOT NULL PRIMARY KEY,
    traits JSON NOT NULL,
    trait_provenance JSON NOT NULL,
    first_seen TIMESTAMPTZ,
    last_seen TIMESTAMPTZ,
    timezone VARCHAR,
    locale VARCHAR,
    device_os VARCHAR,
    country VARCHAR,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_changes (
    profile_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    granted BOOLEAN NOT NULL,
    input VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS erasure_tombstones (
    identifier_hash VARCHAR NOT NULL PRIMARY KEY,
    erasure_id VARCHAR NOT NULL,
    erased_at TIMESTAMPTZ NOT NULL,
    dropped_events BIGINT NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS audit_seq;
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT NOT NULL DEFAULT nextval('audit_seq'),
    occurred_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    details JSON NOT NULL
);
CREATE TABLE IF NOT EXISTS workspace_settings (
    name VARCHAR NOT NULL PRIMARY KEY,
    value VARCHAR NOT NULL
);
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
