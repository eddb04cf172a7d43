-- Every site's journal events, once each: (site, event_id) is the key that makes
-- at-least-once delivery count exactly once.
CREATE TABLE fleet_event (
    id          bigserial PRIMARY KEY,
    site        text        NOT NULL,
    event_id    text        NOT NULL,
    seq         bigint      NOT NULL,
    ts          timestamptz NOT NULL,
    type        text        NOT NULL,
    actor       text,
    alarm_id    text,
    data        jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    collector   text        NOT NULL,
    CONSTRAINT fleet_event_once UNIQUE (site, event_id)
);
CREATE INDEX fleet_event_site_seq ON fleet_event (site, seq);
CREATE INDEX fleet_event_type_ts ON fleet_event (type, ts);
