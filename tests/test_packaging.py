"""The wheel holds all of Hearth: pyproject.toml lists its packages by hand.

`server/` and `indexer/` install as `hearth_lsp.server` / `hearth_lsp.indexer`;
setuptools' discovery cannot rename packages, so a new subpackage must be added to
`[tool.setuptools] packages`. The editable install of the development venv maps
the folders whatever the list says, so only a real wheel shows a missing one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from conftest import REPO

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TOP = {"server": "hearth_lsp.server", "indexer": "hearth_lsp.indexer"}
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def source_packages() -> set[str]:
    """Every folder with an __init__.py under server/ and indexer/, as its installed name."""
    found = set()
    for folder, name in TOP.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            if "__pycache__" not in rel.parts:
                found.add(".".join([name, *rel.parts]))
    return found


def test_every_package_is_listed_in_pyproject():
    setuptools = PROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == {name: folder for folder, name in TOP.items()}
    listed = set(setuptools["packages"])
    assert source_packages() - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - source_packages() == set(), "listed, but no such package"


def test_the_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    """Build the wheel from a copy of the sources, install it (no dependencies) in a new
    venv that sees the development venv's dependencies through a .pth file (which does
    not run that venv's own .pth files, so not the editable install of Hearth), and
    run `hearth` from there. A few seconds: no model runs."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in TOP:
        shutil.copytree(REPO / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(dist), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = dist.glob("hearth_lsp-*.whl")

    # Every source file is in it (prompts included).
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in TOP.items():
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".txt") and "__pycache__" not in path.parts:
                rel = path.relative_to(REPO / folder).as_posix()
                assert f"{package.replace('.', '/')}/{rel}" in names, f"{folder}/{rel} not in the wheel"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "hearth-dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                              "-q", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr

    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    where = subprocess.run(
        [str(python), "-c", "import hearth_lsp.server.lsp.app, hearth_lsp.indexer.workspace, "
         "hearth_lsp.server as s; print(s.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # not the editable one

    hearth = str(venv / "bin" / "hearth")
    helped = subprocess.run([hearth, "--help"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stdout + helped.stderr
    doctor = subprocess.run([hearth, "doctor", "--no-probe"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
