"""The import contracts of pyproject.toml: data flows one way and no package has an import cycle."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"


def test_import_contracts_are_kept(capsys):
    exit_code = lint_imports(config_filename=str(PYPROJECT), no_cache=True)
    assert exit_code == 0, capsys.readouterr().out
