"""pytest plugin: the certification catalog as pytest items.

Installed with the package (entry point ``pytest11``) and inert unless asked for::

    pytest --dlbrig-dut=builtin                       # every case, one item each
    pytest --dlbrig-dut=naive --dlbrig-cases='LIM-*'  # a negative control on the limit family
    pytest --dlbrig-dut=builtin --dlbrig-firmware=noncompliant --dlbrig-out=out/pytest-certify

Each case becomes one item named ``dlbrig::<CASE-ID>`` (so ``-k LIM-001`` and ``--junitxml`` work as
usual); it fails with the case's failing verdicts as the message and errors when the case raised.
At the end of the session the same HTML/JUnit/JSON reports as ``dlbrig certify`` are written to
``--dlbrig-out``. The run goes through :func:`dlbrig.rig.certify.runner.run_case`, the code path of
``dlbrig certify``, so both give the same verdicts.
"""
from __future__ import annotations

import datetime as _dt

import pytest

_KEY = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("dlbrig", "dlbrig certification catalog")
    group.addoption("--dlbrig-dut", default=None, metavar="DUT",
                    help="Run the dlbrig certification catalog against this DUT "
                         "(builtin, naive; see `dlbrig certify --help`).")
    group.addoption("--dlbrig-firmware", default="compliant", choices=("compliant", "noncompliant"),
                    help="Charger firmware of the emulated chargers (default: compliant).")
    group.addoption("--dlbrig-cases", default=None, metavar="GLOBS",
                    help="Only cases matching these globs, e.g. 'LIM-*,FS-00?'.")
    group.addoption("--dlbrig-seed", default=1, type=int, help="Seed of every case (default: 1).")
    group.addoption("--dlbrig-out", default="out/pytest-certify", metavar="DIR",
                    help="Where the case outputs and the reports go (default: out/pytest-certify).")


def pytest_configure(config):
    dut = config.getoption("--dlbrig-dut")
    if dut is None:
        return
    from .runner import DUTS
    if dut not in DUTS:
        raise pytest.UsageError(f"--dlbrig-dut: unknown DUT {dut!r} (one of {', '.join(DUTS)})")
    config.stash[_KEY] = []
    config.addinivalue_line("markers", "dlbrig: a dlbrig certification case")
    for fam in ("lim", "fs", "com", "fair", "kpi"):
        config.addinivalue_line("markers", f"dlbrig_{fam}: a dlbrig certification case of the {fam.upper()} family")


class CaseFailed(Exception):
    """A certification case did not pass: carries the text of its failing verdicts."""


class CertificationItem(pytest.Item):
    def __init__(self, *, case, **kw):
        super().__init__(**kw)
        self.case = case
        self.add_marker(pytest.mark.dlbrig)
        self.add_marker(getattr(pytest.mark, f"dlbrig_{case.family.lower()}"))
        self.user_properties.append(("requirement", case.requirement))
        self.user_properties.append(("source", case.source))

    def runtest(self):
        from .runner import run_case
        opt = self.config.getoption
        result = run_case(self.case, dut=opt("--dlbrig-dut"), firmware=opt("--dlbrig-firmware"),
                          seed=opt("--dlbrig-seed"), out_dir=opt("--dlbrig-out"))
        self.config.stash[_KEY].append(result)
        self.user_properties.append(("status", result.status))
        if result.status == "error":
            raise CaseFailed(f"{self.case.id} errored: {result.error}")
        if result.status != "pass":
            lines = [f"{self.case.id} {self.case.title}: {result.status.upper()}"]
            lines += [f"  [{v.check}] {v.subject}: {v.summary}" for v in result.verdicts if not v.passed]
            lines.append(f"  evidence: {result.out_dir}")
            raise CaseFailed("\n".join(lines))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return "dlbrig", None, f"{self.case.id} {self.case.title}"


@pytest.hookimpl(tryfirst=True)   # before -k / -m deselection, so both apply to the cases
def pytest_collection_modifyitems(session, config, items):
    if config.getoption("--dlbrig-dut") is None:
        return
    from .catalog import select
    cases = select(config.getoption("--dlbrig-cases"))
    if not cases:
        raise pytest.UsageError(f"--dlbrig-cases: no case matches {config.getoption('--dlbrig-cases')!r}")
    items.extend(CertificationItem.from_parent(session, name=c.id, nodeid=f"dlbrig::{c.id}", case=c)
                 for c in cases)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    results = config.stash.get(_KEY, None)
    if not results:
        return
    from .model import SuiteResult
    from ..report import write_reports
    suite = SuiteResult(dut=config.getoption("--dlbrig-dut"), firmware=config.getoption("--dlbrig-firmware"),
                        seed=config.getoption("--dlbrig-seed"),
                        started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        duration_s=sum(r.duration_s for r in results), cases=list(results),
                        interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
    written = write_reports(config.getoption("--dlbrig-out"), suite)
    config._dlbrig_written = written   # for pytest_terminal_summary


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    written = getattr(config, "_dlbrig_written", None)
    if written:
        terminalreporter.write_sep("-", "dlbrig certification reports")
        for name, path in written.items():
            terminalreporter.write_line(f"{name}: {path}")
