"""The package as users meet it: one top-level `xmargin`, a public API, no import cycles."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import xmargin

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"xmargin": ROOT / "engine", "xmargin.strategies": ROOT / "strategies"}


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for file in folder.rglob("*.py"):
            rel = file.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if prefix == "xmargin" and parts[:1] == ["strategies"]:
                continue
            found[".".join([prefix, *parts])] = file
    return found


def _imports(name: str, file: Path, known: set[str]) -> set[str]:
    """The package modules `file` imports, at any depth (inside functions too)."""
    tree = ast.parse(file.read_text())
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_no_import_cycles_between_modules():
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, file, known) for name, file in modules.items()}
    # Package __init__ files that re-export (the public API) are edges from the package to its
    # modules only; a module importing its own package's __init__ would be a cycle and is kept.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_public_api_is_small_and_complete():
    for name in ("run", "open_run", "load_config", "Wakes", "Wake", "View", "PlaceOrder", "Transfer", "compare",
                 "stress", "verify_run"):
        assert name in xmargin.__all__, name
        assert getattr(xmargin, name) is not None
    assert all(not name.startswith("_") or name == "__version__" for name in xmargin.__all__)
    assert sorted(set(xmargin.__all__)) == sorted(xmargin.__all__)


def test_strategies_live_under_xmargin():
    from xmargin.strategies.hold import Hold
    from xmargin.sim.strategy import resolve_strategy

    assert resolve_strategy("hold") is Hold
    assert resolve_strategy("xmargin.strategies.hold:Hold") is Hold


def test_import_from_any_folder_and_user_strategies_folder_does_not_shadow(tmp_path):
    """A user's own `strategies/` package beside their config must not hide the built-ins."""
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text("MINE = True\n")
    code = ("import xmargin, strategies, engine; "
            "from xmargin.sim.strategy import resolve_strategy; "
            "print(strategies.MINE, engine.MINE, resolve_strategy('hold').__module__, xmargin.open_run.__module__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True", "xmargin.strategies.hold", "xmargin.output.results"]


def test_repo_engine_folder_is_never_imported_under_its_own_name():
    done = subprocess.run([sys.executable, "-c", "import engine"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0
    assert "import xmargin" in done.stderr


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "xmargin", "--version"], capture_output=True, text=True, check=True)
    assert xmargin.__version__ in done.stdout


def test_wheel_installs_only_xmargin_at_top_level(tmp_path):
    """`pip install .` must not put `engine` or `strategies` into site-packages."""
    # build from a clean copy: setuptools reuses a stale build/ folder in the source tree
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("engine", "strategies"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
                           str(source)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not build a wheel here (pip needs setuptools from the package index): {done.stderr[-300:]}")
    wheel = next(tmp_path.glob("xmargin-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"xmargin"}
    assert "xmargin/testing.py" in names
    # every module of the source tree is in the wheel (a subpackage missing from pyproject's list would
    # import in an editable install and fail in a real one), and every built-in rule file
    for name, file in _modules().items():
        expected = name.replace(".", "/") + ("/__init__.py" if file.name == "__init__.py" else ".py")
        assert expected in names, f"{expected} is missing from the wheel: add its package to pyproject.toml"
    for rules in (ROOT / "engine" / "venues" / "rules" / "data").glob("*.json"):
        assert f"xmargin/venues/rules/data/{rules.name}" in names


def test_plain_pytest_collects_everything_from_the_repo_root():
    """`pytest` (not only `python -m pytest`) collects every test module without an import error."""
    pytest_bin = Path(sys.executable).with_name("pytest")
    command = [str(pytest_bin)] if pytest_bin.exists() else [sys.executable, "-m", "pytest"]
    done = subprocess.run([*command, "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "error" not in done.stdout.lower().splitlines()[-1]


def test_run_command_path_imports_no_other_command_modules():
    """`xmargin run` loads what a run needs: `import xmargin` is lazy (PEP 562), so the report, sweep,
    capital, compare and stress modules (and plotly / dask) stay unloaded, while every public name
    still resolves on first use."""
    code = ("import sys, xmargin.cli.main, xmargin.sim.runner, xmargin.analysis.summary, xmargin.dataset.checked; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'dask') or m in "
            "('xmargin.output.report', 'xmargin.analysis.sweep', 'xmargin.analysis.capital', "
            "'xmargin.analysis.compare', 'xmargin.analysis.stress', 'xmargin.output.charts'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []
    code = "import xmargin; print(xmargin.capital.__module__, xmargin.run.__name__, xmargin.Sweep.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["xmargin.analysis.capital", "execute", "Sweep"]
    with pytest.raises(AttributeError, match="no attribute 'not_public'"):
        xmargin.not_public  # noqa: B018


def test_the_command_line_freezes_what_is_left_for_the_exit_and_cli_runner_calls_do_not(monkeypatch, tmp_path):
    """`xmargin` / `python -m xmargin` (no args: sys.argv) registers gc.freeze as an exit handler, so
    the interpreter's closing collections skip the objects a run leaves; a call with args (click's
    CliRunner, a program) registers nothing."""
    import atexit
    import gc

    from click.testing import CliRunner

    from xmargin.cli.main import main

    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    assert CliRunner().invoke(main, ["runs", "list", "--root", str(tmp_path)]).exit_code == 0
    assert registered == []
    monkeypatch.setattr(sys, "argv", ["xmargin", "runs", "list", "--root", str(tmp_path)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0 and registered == [gc.freeze]
    listed = subprocess.run([sys.executable, "-m", "xmargin", "runs", "list", "--root", str(tmp_path)],
                            capture_output=True, text=True, check=True)
    assert "no finished runs" in listed.stdout
