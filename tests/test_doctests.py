"""The examples in ddcore's docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ddcore

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(ddcore.__path__, prefix="ddcore.") if info.name != "ddcore.testing"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
