"""suitemon: the safety-monitoring daemon of a PET-CT suite.

Installed as one import package. The source keeps the project's top-level folders, which
setup.py maps under this name: ``daemon/`` -> ``suitemon.daemon`` (core and one package per
feature), ``drivers/`` -> ``suitemon.drivers``, ``simulators/`` -> ``suitemon.simulators``;
``examples/``, ``systemd/`` and ``deploy/`` ship as package data (the demo needs them).
"""

from suitemon.daemon import __version__

__all__ = ["__version__"]
