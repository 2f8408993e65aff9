"""``pip install .`` works: the wheel holds the four packages, their data files and the console scripts, and the
installed copy runs from any folder (nothing relies on the checkout being on ``sys.path``). Offline: the wheel is
built with the setuptools of this environment (``--no-build-isolation``) and installed without dependencies."""

from __future__ import annotations

import configparser
import importlib
import inspect
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bokeh_model", "evaluation", "user_study", "space")
SCRIPTS = {
    "bokeh-model": "bokeh_model.cli:main",
    "bokeh-eval": "evaluation.run:main",
    "bokeh-study": "user_study.__main__:main",
    "bokeh-ebb": "evaluation.ebb:main",
    "bokeh-submit": "evaluation.submit:main",
    "bokeh-pairs": "evaluation.pairs.__main__:main",
}
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    return [name for name in out.stdout.split("\0") if name and (ROOT / name).is_file()]


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **kwargs.pop("env", {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, **kwargs)


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the wheel is built from the tracked files)")
    return _tracked()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, tracked: list[str]) -> Path:
    """A wheel built from a copy of the tracked files (so the checkout gets no build/ folder)."""
    source = tmp_path_factory.mktemp("source")
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    result = _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(source)])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """The wheel installed with ``--target`` (no dependencies: those of this environment are used)."""
    target = tmp_path_factory.mktemp("site")
    result = _run([*PIP, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return target


def test_wheel_holds_the_packages_their_data_and_nothing_else(wheel: Path, tracked: list[str]) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == set(PACKAGES)  # not tests/, benchmarks/, scripts/ or app.py
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names
    # Every file of the packages in the repository, code or data (web assets, example photos), is in the wheel.
    product = {name for name in tracked if name.split("/")[0] in PACKAGES}
    assert product <= names, sorted(product - names)
    assert {"user_study/web/rater.html", "user_study/web/rater.js", "user_study/web/rater.css"} <= names
    assert any(name.startswith("space/examples/") for name in names)


def test_wheel_declares_the_console_scripts_and_dependencies(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    info = next(name.split("/")[0] for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
    entry_points = configparser.ConfigParser()
    entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())
    assert dict(entry_points["console_scripts"]) == SCRIPTS
    metadata = archive.read(f"{info}/METADATA").decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert "torch==2.14.1" in requires and any(line.startswith("gradio==") for line in requires)
    assert not any(line.startswith(("pytest", "ruff")) for line in requires)  # test tools stay in -dev


@pytest.mark.parametrize(("script", "target"), sorted(SCRIPTS.items()))
def test_each_console_script_target_is_a_main_returning_an_exit_code(script: str, target: str) -> None:
    module, _, name = target.partition(":")
    main = getattr(importlib.import_module(module), name)
    assert callable(main) and inspect.signature(main).return_annotation in (int, "int"), script
    with pytest.raises(SystemExit) as info:  # argparse's --help exits 0 before anything runs
        main(["--help"])
    assert info.value.code == 0, script


def test_installed_copy_runs_from_any_folder(installed: Path, tmp_path: Path) -> None:
    """Run from an empty folder with only the installed copy on the path: the console script, ``python -m`` and
    the data files all come from the installed package, not from this checkout."""
    env = {"PYTHONPATH": str(installed)}
    where = _run(
        [
            sys.executable,
            "-c",
            "import bokeh_model, evaluation, user_study, space; from space.config import EXAMPLES_DIR; "
            "from user_study.rater_api import WEB_DIR; "
            "print(bokeh_model.__file__, evaluation.__file__, user_study.__file__, space.__file__, "
            "(WEB_DIR / 'rater.html').is_file(), any(EXAMPLES_DIR.iterdir()))",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert where.returncode == 0, where.stderr[-3000:]
    *files, has_page, has_examples = where.stdout.split()
    assert all(Path(file).is_relative_to(installed) for file in files), files
    assert has_page == "True" and has_examples == "True"

    script = installed / "bin" / "bokeh-model"
    assert script.is_file()
    for command in ([str(script), "--help"], [sys.executable, "-m", "bokeh_model", "--help"]):
        result = _run(command, cwd=tmp_path, env=env)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        assert "usage:" in result.stdout and "render" in result.stdout
    listed = _run([str(script), "list"], cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert all(name in listed.stdout for name in ("lens", "gaussian", "disk", "pynet"))
