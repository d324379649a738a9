-- Warehouse landing: the columns discovered in properties and traits, one row per landing view column.
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
