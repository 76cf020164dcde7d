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
              help="Device under test: the built-in core as controller, or the naive negative control.")
@click.option("--firmware", type=click.Choice(["compliant", "noncompliant"]), default="compliant",
              show_default=True, help="Charger firmware: standard timings, or the non-compliant knobs "
                                      "(slow contactor, no watchdog, no diode check, ...).")
@click.option("--cases", "pattern", default=None, help="Only cases matching these globs, e.g. 'LIM-*,FS-00?'.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/certify", show_default=True)
@click.option("--list", "list_only", is_flag=True, help="Print the catalog and exit.")
def certify(dut, firmware, pattern, seed, out_dir, list_only):
    """Run the certification catalog and write report.html, junit.xml and summary.json."""
    from .certify.catalog import select
    from .certify.model import FAMILIES
    from .certify.runner import run_suite

    cases = select(pattern)
    if list_only:
        for c in cases:
            click.echo(f"{c.id:<9} {c.role:<10} {c.title}")
            click.echo(f"{'':<20} requirement: {c.requirement}")
            click.echo(f"{'':<20} source: {c.source}; scenario: {c.scenario}")
        click.echo(f"{len(cases)} cases in {len({c.family for c in cases})} families "
                   f"({', '.join(f'{k} {v}' for k, v in FAMILIES.items())})")
        return
    if not cases:
        click.echo(f"error: --cases: no case matches {pattern!r}", err=True)
        sys.exit(2)

    def progress(i, n, case, elapsed):
        click.echo(f"[{i + 1}/{n}] {case.id} {case.title} ({elapsed:.0f} s elapsed)", err=True)

    suite = run_suite(cases, dut=dut, firmware=firmware, seed=seed, out_dir=out_dir, progress=progress)
    written = {}
    try:
        from .report import write_reports
        written = write_reports(out_dir, suite)
    except ImportError as exc:      # the report module is optional at this stage of the build
        click.echo(f"warning: no report written ({exc})", err=True)
    width = max(len(c.case.id) for c in suite.cases) if suite.cases else 8
    for cr in suite.cases:
        first = next((v for v in cr.verdicts if not v.passed), None)
        why = cr.error.splitlines()[0] if cr.error else (first.summary if first else "")
        click.echo(f"  {cr.status.upper():<5} {cr.case.id:<{width}} {cr.case.title}" + (f" -- {why}" if why else ""))
    click.echo(f"dlbrig certify --dut {dut} --firmware {firmware}: {len(suite.cases)} cases in "
               f"{suite.duration_s:.0f} s" + (" (interrupted)" if suite.interrupted else ""))
    for name, path in written.items():
        click.echo(f"  {name}: {path}")
    click.echo(f"{suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed or suite.interrupted else 0)


def _load(scenario, **overrides):
    """A scenario by path or built-in name; a bad file exits 2 with FILE:LINE: FIELD: PROBLEM."""
    from .scenario import ScenarioError, load_scenario

    try:
        return load_scenario(scenario, **{k: v for k, v in overrides.items() if v is not None})
    except ScenarioError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@main.command()
def scenarios():
    """List the built-in scenario library."""
    from .scenario import list_scenarios

    items = list_scenarios()
    width = max(len(n) for n, _ in items)
    for name, desc in items:
        first = (desc or "").strip().splitlines()[0] if desc else ""
        click.echo(f"{name:<{width}}  {first}")


@main.command()
@click.argument("scenario")
@click.option("--mode", type=click.Choice(["fast", "wire"]), default=None,
              help="fast: virtual clock, in-memory; wire: real Modbus on loopback. Default: the scenario's.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (trace.csv, summary.json). Default: out/<scenario>-<mode>.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--duration", type=str, default=None, help="Override the duration (e.g. 10m, 3600s).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Wire mode: run this many times faster than real time.")
@click.option("--backend", type=click.Choice(["c", "reference"]), default="c", show_default=True)
def run(scenario, mode, out_dir, seed, duration, speed, backend):
    """Run SCENARIO (a path or a built-in name) and write its trace and summary."""
    from .runner import run_fast
    from .scenario.times import parse_duration

    if duration is not None:
        try:
            parse_duration(duration)
        except ValueError as exc:
            click.echo(f"error: --duration: {exc}", err=True)
            sys.exit(2)
    sc = _load(scenario, duration=duration, seed=seed, mode=mode)
    mode = sc.mode
    out_dir = out_dir or f"out/{sc.name}-{mode}"
    total = sc.duration_ms
    with click.progressbar(length=total // 1000, label=f"{sc.name} ({mode})", show_eta=True,
                           file=sys.stderr) as bar:
        last = [0]

        def progress(t_ms, _total):
            s = t_ms // 1000
            if s - last[0] >= 60 or t_ms + 1000 >= _total:
                bar.update(s - last[0])
                last[0] = s

        if mode == "fast":
            summary = run_fast(sc, out_dir, backend=backend, progress=progress)
        else:
            from .wire import run_wire
            summary = run_wire(sc, out_dir, backend=backend, speed=speed, progress=progress)
    over = {n: c["max_over_a"] for n, c in summary["circuits"].items() if c["max_over_a"] > 0}
    click.echo(f"{sc.name}: {summary['simulated_s']:.0f} s simulated in {summary['wall_s']:.1f} s "
               f"({summary['speed_x_realtime']}x real time), {summary['energy_delivered_kwh']} kWh delivered, "
               f"{len(summary['sessions'])} sessions, failed transactions {summary['failed_transactions']}")
    click.echo(f"limit: " + ("never above" if not over else
                             ", ".join(f"{n} up to +{v:.2f} A" for n, v in over.items())))
    click.echo(f"trace: {out_dir}/trace.csv  summary: {out_dir}/summary.json")


@main.command()
@click.argument("scenario")
@click.option("--bind", "host", default="127.0.0.1", show_default=True,
              help="Address to serve on. Anything but loopback needs --allow-non-loopback.")
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding to a non-loopback address.")
@click.option("--base-port", type=int, default=0, show_default=True,
              help="First TCP port (devices get consecutive ports); 0 = ports chosen by the OS.")
@click.option("--endpoints", "endpoints_file", type=click.Path(dir_okay=False), default=None,
              help="Write the endpoint list (JSON) here once the servers listen.")
@click.option("--duration", type=str, default=None, help="Stop after this long (default: until Ctrl-C).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Physics this many times faster than real time.")
def emulate(scenario, host, allow_non_loopback, base_port, endpoints_file, duration, speed):
    """Serve SCENARIO's meters and chargers over Modbus with no built-in controller.

    Point an external controller at the endpoints; the physics (building load, EVs following their
    set-points, watchdogs) runs in real time. Ctrl-C stops the servers and leaves nothing behind.
    """
    import asyncio

    from .modbus.server import check_bind_host
    from .wire import emulate_async

    sc = _load(scenario)
    try:
        check_bind_host(host, allow_non_loopback)
    except PermissionError:
        click.echo(f"error: --bind: refusing to serve on {host!r}, which is not a loopback address; "
                   f"add --allow-non-loopback to serve on a real network", err=True)
        sys.exit(2)
    duration_ms = None
    if duration is not None:
        from .scenario.times import parse_duration
        try:
            duration_ms = parse_duration(duration)
        except ValueError as exc:
            click.echo(f"error: --duration: {exc}", err=True)
            sys.exit(2)

    def ready(endpoints):
        for ep in endpoints:
            where = ep["serial"] or f"{ep['host']}:{ep['port']}"
            click.echo(f"{ep['kind']:<8} {ep['device']:<16} {ep['profile']:<16} {ep['transport']:<4} "
                       f"{where} unit {ep['unit']}")
        click.echo(f"{len(endpoints)} endpoints serving; Ctrl-C to stop", err=True)
        sys.stdout.flush()

    try:
        asyncio.run(emulate_async(sc, host=host, base_port=base_port, endpoints_file=endpoints_file,
                                  allow_non_loopback=allow_non_loopback, duration_ms=duration_ms,
                                  speed=speed, ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        click.echo(f"error: cannot serve: {exc}", err=True)
        sys.exit(2)


@main.group(invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Shorter runs (development; figures are rougher).")
@click.option("--skip-certify", is_flag=True, help="Leave out the make certify wall time (development).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/bench", show_default=True,
              help="Folder for bench.json (and a copy named after the commit and time).")
@click.pass_context
def bench(ctx, quick, skip_certify, out_dir):
    """The one benchmark report (also: make bench): core step times, fast-mode speed, wire-mode cycle
    time, Modbus transactions/s next to pymodbus's own server, make certify wall time."""
    if ctx.invoked_subcommand is not None:
        return
    from . import bench as rig_bench

    cfg = (rig_bench.BenchConfig.quick if quick else rig_bench.BenchConfig.full)(certify=not skip_certify)
    rep = rig_bench.run_report(cfg, progress=lambda msg: click.echo(f"  {msg} ...", err=True))
    click.echo(rig_bench.format_report(rep))
    click.echo(f"wrote {rig_bench.save_report(rep, out_dir)}")


@bench.command("core")
def bench_core():
    """Core step times: C through cffi, pure C, reference."""
    from ..core import bench as core_bench

    core_bench.main()


if __name__ == "__main__":
    main()
