"""The demo: simulators + daemon + a live view, scenarios played against them."""
