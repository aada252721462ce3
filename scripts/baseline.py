"""Another git revision of the package, importable beside this checkout's, for benchmarks that
measure two versions side by side in one run (``--baseline REV``): run a process with
``PYTHONPATH`` set to ``baseline_tree(REV, folder)`` and it imports that revision's ``sendlearn``."""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGES = {"root": "", "cli": "cli", "plugin": "plugin", "capture": "capture", "transport": "transport",
            "server": "server", "store": "store", "files": "files", "dataset": "dataset"}


def baseline_tree(revision: str, into: Path) -> Path:
    """The package of git ``revision`` (of this checkout) as an importable ``sendlearn`` tree:
    its folders extracted and linked the way pyproject's package-dir maps them."""
    repo = Path(__file__).resolve().parent.parent
    source = into / "source"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    package = into / "tree" / "sendlearn"
    package.mkdir(parents=True)
    for folder, name in PACKAGES.items():
        if name:
            (package / name).symlink_to(source / folder)
        else:
            for file in (source / folder).iterdir():
                (package / file.name).symlink_to(file)
    return into / "tree"
