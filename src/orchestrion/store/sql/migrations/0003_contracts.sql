-- Data contracts: the plan versions in force, so that a breaking change to a published version is refused.
CREATE TABLE IF NOT EXISTS contract_versions (
    event_type VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    schema_hash VARCHAR NOT NULL,
    definition JSON NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_type, name, version)
);
