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
