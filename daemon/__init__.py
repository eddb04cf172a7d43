"""suitemon core: config, journal, alarm engine, MQTT, wiring.

Data flows one way: driver -> reading -> rules -> alarm event -> journal -> MQTT.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
