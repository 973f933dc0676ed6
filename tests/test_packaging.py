"""setup.cfg lists every package directory: one left out would be missing from
the wheel, so the image (which installs the wheel) would fail to start while
an editable install still works."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_in_setup_cfg() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = set()
    for top, name in (("ollama_gateway", "ollama_gateway"),
                      ("translators", "ollama_gateway_translators")):  # fmt: skip
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    assert "ollama_gateway.http1" in found
    assert found == listed
