-- Collection: the raw event log, the dedup keys and the quarantine.
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
