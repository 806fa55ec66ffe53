"""The public API's annotations, as a user's type checker sees them:
tests/typecheck/example_usage.py asserts the types of lsm's calls, mypy
checks it (skipped when mypy is not installed: it is the `lint` extra), and
the same code runs against a real database so the example stays true."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "tests", "typecheck", "example_usage.py")


def test_example_usage_type_checks() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[lint]')")
    # From the repository's root, so that mypy reads its [tool.mypy] and
    # finds this tree's lsm package (not an installed copy).
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", EXAMPLE], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_usage_runs(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("example_usage", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.usage(str(tmp_path / "db"))
