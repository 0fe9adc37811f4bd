"""How lionsweep reads YAML (the server's bodies, the client's spec files, a worker's command
configs): PyYAML's safe schema with three YAML 1.2 readings that configs need. ``1e-5`` is the
number 1e-5 (YAML 1.1 wants a dot, ``1.0e-5``, and reads ``1e-5`` as a string); only
``true`` and ``false`` are booleans (YAML 1.1 also reads ``on``, ``off``, ``yes``, ``no``, ``y``
and ``n`` so: ``reevaluate: off`` would be ``false``); and ``2026-01-01`` is the string it looks
like (YAML 1.1 makes it a date, which JSON cannot hold)."""

from __future__ import annotations

import re
from typing import Any

FLOAT_TAG = "tag:yaml.org,2002:float"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
BOOL_TAG = "tag:yaml.org,2002:bool"
BOOLEAN = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
"""YAML 1.2's booleans."""
EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
"""A number in exponent notation with or without a dot: ``1e-5``, ``-3E4``, ``2.5e-3``."""


def config_loader(base: Any) -> Any:
    """A subclass of the PyYAML loader class ``base`` (a safe one) that reads exponent
    notation without a dot as a float, only YAML 1.2's booleans as booleans, and leaves
    timestamps as strings."""

    class ConfigLoader(base):  # type: ignore[misc, valid-type]
        pass

    ConfigLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (TIMESTAMP_TAG, BOOL_TAG)]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    ConfigLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789"))
    ConfigLoader.add_implicit_resolver(BOOL_TAG, BOOLEAN, list("tTfF"))
    return ConfigLoader
