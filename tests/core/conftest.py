"""Fixtures and hypothesis profiles for the allocator-core suites.

Profiles (registered here, never loaded globally so other suites keep their own settings):

* ``core-ci`` (default): ``derandomize=True``, no deadline, no example database. The same examples run
  on every machine, so CI is deterministic; the budgets per test are set where the test is defined.
* ``core-dev``: random exploration with 5x the examples, for hunting (``DLBRIG_HYPOTHESIS=core-dev``).

``tests/core/helpers.py`` is loaded under the unique module name ``core_helpers`` so that another test
folder's ``helpers.py`` cannot shadow it in ``sys.modules`` (the suites have no ``__init__.py``).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.large_base_example]
settings.register_profile("core-ci", derandomize=True, deadline=None, database=None,
                          suppress_health_check=_HEALTH, print_blob=True)
settings.register_profile("core-dev", deadline=None, suppress_health_check=_HEALTH, print_blob=True)

# A counterexample from a multi-step world is expensive to replay; hypothesis shrinks for up to 300 s by
# default. Under core-ci cap it at 45 s so a failing property still reports a (mostly) shrunk example
# within the suite's time budget. DLBRIG_SHRINK_SECONDS overrides (e.g. 300 when hunting).
try:
    from hypothesis.internal.conjecture import engine as _engine
    import os as _os
    _engine.MAX_SHRINKING_SECONDS = int(_os.environ.get("DLBRIG_SHRINK_SECONDS", "45"))
except (ImportError, AttributeError):  # pragma: no cover - a hypothesis without the knob
    pass

if "core_helpers" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("core_helpers", Path(__file__).with_name("helpers.py"))
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["core_helpers"] = _mod
    _spec.loader.exec_module(_mod)

import core_helpers as H  # noqa: E402


@pytest.fixture
def example_spec():
    """The README / DESIGN example site: a metered 63 A main with a 32 A garage below it."""
    return H.example_spec()


@pytest.fixture
def example_site():
    from dlbrig.core import Site
    return Site.from_dict(H.example_spec())


@pytest.fixture(params=["c", "reference"])
def backend(request):
    return request.param
