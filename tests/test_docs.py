"""The examples in derain's docstrings run, so the documentation cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import derain

# derain.demo.app imports Gradio (an extra); its page is tested in test_demo.py
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(derain.__path__, "derain.")
    if info.name != "derain.demo.app"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (printed above)"
