"""The package as a user installs it: the wheel built from this tree, installed into a fresh
virtual environment (no system or project site-packages), runs ``workbench init`` and a headless
``workbench run`` of a shipped example from outside the checkout.

Every file of ``workbench/`` in the checkout must be in the wheel (package data in
pyproject.toml): a data file left out fails here by name, before anything runs.

The dependencies are the wheel's declared ones and what they declare in turn, taken from this
project's environment (the same versions the suite tests) by their RECORDs instead of downloaded
again: a full ``pip install`` from PyPI takes one to four minutes on this 2-core machine, the
copy a few seconds. Only declared dependencies are there, so a direct import missing from
pyproject.toml fails here when init or the run reaches it. Building the wheel needs PyPI (pip
fetches setuptools) as it does for a user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from workbench import accounts
from workbench.paths import Space

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STUDY = "lung-validation"  # its view is a public dataset: a space with 0 synthetic patients will do


def _timed(step: str, argv: list, **kwargs) -> subprocess.CompletedProcess:
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    print(f"{step}: {time.monotonic() - start:.1f} s")  # shown with -s: figures for the docs
    assert result.returncode == 0, (
        f"{step} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _package_files() -> list[str]:
    """What a clone holds to build from: the files git tracks or would track (not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--",
                             "workbench", "pyproject.toml", "README.md"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return sorted(name for name in listed if (ROOT / name).is_file())


@pytest.fixture(scope="module")
def outside():
    """A directory outside the checkout that the study and service accounts can traverse."""
    path = Path(tempfile.mkdtemp(prefix="wb-wheel-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(outside):
    source = outside / "source"
    for name in _package_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    _timed("build the wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                               "-w", str(outside / "dist"), str(source)])
    (built,) = (outside / "dist").glob("workbench-*.whl")
    return built


def _declared(requires: list[str] | None, extras: frozenset[str]):
    for text in requires or ():
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            yield req


def dependency_closure(requires: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``requires`` needs, with what they need, extras included."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(_declared(requires, frozenset()))
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key not in seen:
            seen.add(key)
            found[key[0]] = dist = metadata.distribution(req.name)
            todo += _declared(dist.requires, key[1])
    return list(found.values())


def copy_installed(dists: list[metadata.Distribution], venv: Path) -> int:
    """Each distribution's files (RECORD) from this environment into ``venv`` at the same place
    relative to the prefix: hard links (same file system), scripts with the venv's shebang."""
    prefix, count = Path(sys.prefix), 0
    for dist in dists:
        for entry in dist.files or ():
            source = Path(os.path.normpath(dist.locate_file(entry)))
            if not source.is_file() or not source.is_relative_to(prefix):
                continue  # a .pyc not written, or a file outside the environment
            target = venv / source.relative_to(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = source.read_bytes() if target.parent.name == "bin" else b""
            if data.startswith(f"#!{prefix}/bin/python".encode()):
                _, _, rest = data.partition(b"\n")
                target.write_bytes(f"#!{venv}/bin/python".encode() + b"\n" + rest)
                target.chmod(source.stat().st_mode)
            else:
                try:
                    os.link(source, target)
                except OSError:  # another file system
                    shutil.copy2(source, target)
            count += 1
    return count


@pytest.fixture(scope="module")
def installed(outside, wheel):
    """The venv's bin/ and the environment the commands run with (nothing of the checkout)."""
    venv = outside / "venv"
    _timed("create the venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)])
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    _timed("pip install the wheel", [*pip, "install", "-q", "--no-deps", str(wheel)])
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = HeaderParser().parsestr(archive.read(name).decode()).get_all("Requires-Dist")
    start = time.monotonic()
    files = copy_installed(dependency_closure(requires), venv)
    print(f"copy the declared dependencies ({files} files): {time.monotonic() - start:.1f} s")
    _timed("pip check", [*pip, "check"])  # every requirement of every distribution there is met
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WORKBENCH_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return venv / "bin", env


def test_every_file_of_the_package_is_in_the_wheel(wheel):
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    wanted = {name for name in _package_files() if name.startswith("workbench/")}
    assert wanted, "no package files found"
    missing = sorted(wanted - shipped)
    assert not missing, f"not in the wheel (package-data in pyproject.toml): {missing}"


def test_installed_wheel_inits_a_space_and_runs_an_example_headless(installed, outside):
    bin_dir, env = installed
    # the installed package answers, not the checkout (whose editable finder is not in this venv)
    where = _timed("import workbench", [bin_dir / "python", "-c",
                                        "import workbench, workbench.resources as r; "
                                        "print(workbench.__file__); print(r.NOTEBOOKS)"],
                   cwd=outside, env=env).stdout.split()
    site = next((bin_dir.parent / "lib").glob("python3*/site-packages"))
    assert Path(where[0]).parent == site / "workbench"
    notebook = Path(where[1]) / "lung_validation.ipynb"
    assert notebook.is_file()

    space = Space(outside / "space")
    _timed("workbench init", [bin_dir / "workbench", "init", "--data-dir", space.root,
                              "--patients", "0"], cwd=outside, env=env)
    assert space.manifest.is_file()

    # no --policy: the demo policy shipped in the wheel is the default
    result = _timed("workbench run", [bin_dir / "workbench", "run", notebook, "--study", STUDY,
                                      "--user", "alice", "--data-dir", space.root],
                    cwd=outside, env=env)
    assert "Traceback" not in result.stderr
    assert re.search(r"^ok: \d+ cells ran", result.stdout, re.M), result.stdout[-2000:]
    executed = Path(re.search(r"executed notebook: (\S+)", result.stdout).group(1))
    assert executed.parent == space.workspace(STUDY) / "runs"
    assert executed.stat().st_uid == pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid
    cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in cells)
    assert not [o for c in cells for o in c.outputs if o.get("output_type") == "error"]
    # the secure path ran in the sandboxed kernel: its curve equals lifelines' on the public copy
    output = "".join(o.get("text", "") for c in cells for o in c.outputs)
    assert "largest difference between the curves: 0.0e+00" in output
