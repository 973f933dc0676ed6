"""Print the requirements declared in setup.cfg, one per line, for `pip install -r`.

The Dockerfile installs them before it copies the source, so the dependency
layers stay cached until setup.cfg changes.

    python requirements_from_setup_cfg.py setup.cfg            # install_requires
    python requirements_from_setup_cfg.py setup.cfg test dev   # those extras
"""

from __future__ import annotations

import configparser
import sys


def read_requirements(path: str, extras: list[str]) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(path, encoding="utf-8"):
        raise SystemExit(f"{path}: cannot be read")
    if extras:
        declared = parser["options.extras_require"]
        missing = [name for name in extras if name not in declared]
        if missing:
            raise SystemExit(f"{path}: no extra named {', '.join(missing)}")
        values = [declared[name] for name in extras]
    else:
        values = [parser.get("options", "install_requires", fallback="")]
    lines = [line.split("#", 1)[0].strip() for v in values for line in v.splitlines()]
    if any(line.startswith("file:") for line in lines):
        raise SystemExit(f"{path}: 'file:' requirements are not supported here")
    return [line for line in lines if line]


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    print("\n".join(read_requirements(argv[0], argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
