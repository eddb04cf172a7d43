"""Maps the project's top-level folders under one import name, ``suitemon``.

pyproject.toml holds the metadata; only the package mapping lives here, because it is
computed: every package below daemon/, drivers/ and simulators/ is installed as
``suitemon.<folder>...``, and no top-level ``daemon``/``drivers``/``simulators`` is.
"""

from setuptools import find_packages, setup

TOPS = ("daemon", "drivers", "simulators")
packages = ["suitemon"] + [
    f"suitemon.{p}" for p in find_packages(include=[f"{t}" for t in TOPS] + [f"{t}.*" for t in TOPS])
]

setup(
    packages=packages,
    package_dir={"suitemon": "."},
    package_data={
        "suitemon": [
            "examples/*.toml",
            "examples/scenarios/*.toml",
            "systemd/*",
            "deploy/mosquitto/*",
            "deploy/central/*",
        ],
        "suitemon.daemon": ["schemas/*.json"],
        "suitemon.drivers.profiles": ["*.toml"],
        "suitemon.daemon.board": ["static/*"],
        "suitemon.daemon.fleet": ["migrations/*.sql"],
        "suitemon.daemon.report": ["templates/*"],
    },
)
