"""The fleet: many sites' events, collected through the central cluster into PostgreSQL (docs/fleet.md)."""
