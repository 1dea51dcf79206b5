"""Copy what the test suite needs, without the ``djtasks`` package, to a directory of its own.

tox runs the suite from that copy so that ``import djtasks`` finds the installed wheel: run from this checkout,
pytest (its rootdir on ``sys.path``) and ``manage.py`` subprocesses (the script's directory) would import the
source tree instead and prove nothing about the wheel. ``tests/packaging`` checks which one was imported.

    python devtools/stage.py DEST
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("tests", "example_site", "devtools", "bench", "manage.py", "tox.ini")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "artifacts", ".local")


def stage(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=IGNORED)
        else:
            shutil.copy2(source, dest / name)
    # Screenshots of the browser tests land where the README says, in this checkout.
    artifacts = ROOT / "tests" / "browser" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (dest / "tests" / "browser" / "artifacts").symlink_to(artifacts, target_is_directory=True)
    assert not (dest / "djtasks").exists()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    stage(Path(sys.argv[1]))
    print(f"stage: the test suite copied to {sys.argv[1]} (djtasks comes from the installed wheel)")
