"""A real install: the wheel that ``pip install .`` builds holds every package of the tree,
``run.py`` and the ``sniper-engine`` console script, and works outside the checkout.

The wheel is built from a copy of the shipped files (not the checkout itself, whose ``build/``
left over from an earlier build could hide a missing package), without build isolation and
without an index: the ``setuptools`` and ``wheel`` of the test environment (the ``[test]``
extra) build it, so no network is needed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "adapters", "state")
SHIPPED = (*PACKAGES, "run.py", "setup.cfg", "pyproject.toml", "README.md")
BUILD_TIMEOUT_S = 110


def _can_build_offline() -> str | None:
    """Why a wheel cannot be built here without the network, or None."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed (pip install -e '.[test]')"
    import setuptools

    major_minor = tuple(int(part) for part in setuptools.__version__.split(".")[:2])
    if major_minor < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {setuptools.__version__} needs the wheel package (pip install -e '.[test]')"
    return None


def tree_modules() -> list[str]:
    """Every ``.py`` file of the checkout's packages, as a path in a wheel (``state/x.py``)."""
    modules = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                modules.append(path.relative_to(ROOT).as_posix())
    return modules


def tree_packages() -> list[str]:
    """Every folder of the checkout's packages holding ``.py`` files (``state/strategies``)."""
    return sorted({module.rsplit("/", 1)[0] for module in tree_modules()})


@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _can_build_offline()
    if reason is not None:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("wheel")
    source, out = base / "src", base / "dist"
    source.mkdir()
    for name in SHIPPED:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = list(out.glob("sniper_engine-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}: {sorted(p.name for p in out.iterdir())}"
    return wheels[0]


def test_the_tree_has_the_packages_this_test_checks():
    # The checks below would pass on an empty tree: make sure they look at the real one.
    assert {"actors", "adapters", "state", "state/strategies"} <= set(tree_packages())
    assert "actors/sniper.py" in tree_modules()


def test_every_package_of_the_tree_and_run_py_are_in_the_wheel(wheel_file):
    names = set(zipfile.ZipFile(wheel_file).namelist())
    missing_packages = [p for p in tree_packages() if f"{p}/__init__.py" not in names]
    assert not missing_packages, f"folders without __init__.py in the wheel (add one): {missing_packages}"
    missing_modules = [m for m in tree_modules() if m not in names]
    assert not missing_modules, f"modules missing from the wheel: {missing_modules}"
    assert "run.py" in names
    assert not [n for n in names if n.startswith("tests/")], "the tests are not part of the install"


def test_the_wheel_declares_the_sniper_engine_console_script(wheel_file):
    archive = zipfile.ZipFile(wheel_file)
    [entry_points] = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = archive.read(entry_points).decode()
    section = text.split("[console_scripts]", 1)[1].split("[", 1)[0]
    scripts = {line.split("=")[0].strip(): line.split("=", 1)[1].strip()
               for line in section.splitlines() if "=" in line}
    assert scripts.get("sniper-engine") == "run:main", text


def _dependency_paths() -> list[str]:
    """The folders the running interpreter imports the engine's dependencies from."""
    paths = []
    for name in ("pykka", "ccxt", "websocket", "peewee", "loguru"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is not installed"
        origin = Path(spec.origin)
        folder = origin.parent.parent if origin.name == "__init__.py" else origin.parent
        if str(folder) not in paths:
            paths.append(str(folder))
    return paths


@pytest.mark.slow
def test_the_installed_wheel_runs_from_any_folder(wheel_file, tmp_path):
    """Installed into a fresh venv (no pip in it, no download: the dependencies are borrowed
    from this interpreter through a .pth file), the engine imports, the console script answers
    ``--help``, and a short replay session runs to its end, from a folder outside the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=BUILD_TIMEOUT_S)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    # A path line in a .pth file is added to sys.path, but the .pth files of that folder are not
    # read: this interpreter's editable install of the checkout stays invisible to the venv.
    (Path(purelib) / "borrowed_dependencies.pth").write_text("\n".join(_dependency_paths()) + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", str(wheel_file)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )
    assert installed.returncode == 0, f"{installed.stdout}\n{installed.stderr}"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=100, cwd=elsewhere,
                              env=env, stdin=subprocess.DEVNULL)

    imported = run(str(python), "-c", "import actors, run; from run import build_engine; "
                                      "print(run.__file__); print(actors.__file__)")
    assert imported.returncode == 0, imported.stderr
    for line in imported.stdout.split():
        assert Path(line).resolve().is_relative_to(Path(purelib).resolve()), imported.stdout
        assert not Path(line).resolve().is_relative_to(ROOT), imported.stdout

    script = bin_dir / "sniper-engine"
    helped = run(str(script), "--help")
    assert helped.returncode == 0, helped.stderr
    for option in ("--config", "--data-dir", "--duration", "--repl", "--record", "--status"):
        assert option in helped.stdout, helped.stdout

    (elsewhere / "trades.csv").write_text("".join(
        f"{1_700_000_000_000 + i * 1000},{42000 + i},0.01\n" for i in range(50)))
    (elsewhere / "replay.toml").write_text(
        '[engine]\ndata_dir = "var"\n'
        '[feed]\nsource = "replay"\nsymbols = ["BTC"]\nspeed = "max"\n'
        'files = [{ coin = "BTC", path = "trades.csv" }]\n')
    session = run(str(script), "--config", "replay.toml")
    assert session.returncode == 0, f"{session.stdout}\n{session.stderr}"
    assert "50 ticks, ended by end of data" in session.stdout, session.stdout
    assert (elsewhere / "var" / "runs").is_dir()
