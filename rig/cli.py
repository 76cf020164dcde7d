"""The ``dlbrig`` command line (click)."""
from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dlbrig")
def main():
    """dlbrig: load-balancing core and the hardware-in-the-loop rig that certifies it."""


@main.command()
@click.option("--dut", type=click.Choice(["builtin", "naive"]), default="builtin", show_default=True,
              help="Controller under test: the built-in core, or the naive negative control.")
@click.option("--seed", type=int, default=1, show_default=True)
def certify(dut, seed):
    """Run the certification suite (today: the core conformance scenarios, in-process)."""
    from .conformance import run_all

    verdicts = run_all(dut, seed)
    width = max(len(v.scenario) for v in verdicts)
    click.echo(f"dlbrig certify --dut {dut} --seed {seed}: core conformance scenarios (in-process)")
    for v in verdicts:
        mark = "PASS" if v.passed else "FAIL"
        click.echo(f"  {mark}  {v.scenario:<{width}}  {v.title}")
        stats = ", ".join(f"{k}={val}" for k, val in v.stats.items())
        click.echo(f"        {'':<{width}}  {stats}")
        for f in v.findings[:5]:
            click.echo(f"        {'':<{width}}  - {f}")
    failed = sum(not v.passed for v in verdicts)
    click.echo(f"{len(verdicts) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@main.group()
def bench():
    """Benchmarks (also: make bench)."""


@bench.command("core")
def bench_core():
    """Core step times: C through cffi, pure C, reference."""
    from ..core import bench as core_bench

    core_bench.main()


if __name__ == "__main__":
    main()
