-- What arrived on an event topic but was not an event: kept, never dropped silently.
CREATE TABLE fleet_rejected (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text        NOT NULL,
    reason      text        NOT NULL,
    payload     bytea       NOT NULL,
    collector   text        NOT NULL
);
