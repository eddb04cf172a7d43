"""Prometheus endpoint (``[metrics]``): the daemon's health as scrape-able metrics, off by default."""
