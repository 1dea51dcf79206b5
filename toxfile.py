"""tox plugin of this repository (tox loads ``toxfile.py`` by itself): say what to install when an interpreter
that an environment needs is missing, instead of leaving only tox's "could not find python interpreter"."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any

from tox.plugin import impl

_checked: dict[str, str | None] = {}


def _problem(version: str) -> str | None:
    """Why ``python<version>`` cannot run here, or None when it can."""
    if version not in _checked:
        exe = shutil.which(f"python{version}")
        if exe is None:
            _checked[version] = f"no python{version} on PATH"
        else:
            try:
                proc = subprocess.run([exe, "-c", "import venv"], capture_output=True, text=True, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                _checked[version] = f"{exe} does not run: {exc}"
            else:
                # A pyenv shim exists for every version pyenv knows, and fails when .python-version names one
                # that is not installed: its message says which.
                detail = (proc.stderr.strip().splitlines() or [""])[0]
                _checked[version] = None if proc.returncode == 0 else f"{exe} fails: {detail}"
    return _checked[version]


@impl
def tox_add_env_config(env_conf: Any, state: Any) -> None:
    match = re.match(r"py(\d)(\d+)\b", env_conf.name)
    if match is None:
        return
    version = f"{match.group(1)}.{match.group(2)}"
    problem = _problem(version)
    if problem is None:
        return
    print(
        f"\ntox: environment {env_conf.name} needs Python {version} ({problem}). Install it, e.g.\n"
        f"    pyenv install {version}          (this repository's .python-version lists the pyenv versions it uses)\n"
        f"    apt-get install python{version} python{version}-venv   (Debian/Ubuntu, where packaged)\n"
        f"    uv python install {version}\n"
        "or run only the environments you have: python -m tox -e lint,typecheck,py311-django52\n",
        file=sys.stderr,
    )
