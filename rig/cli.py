"""The ``dlbrig`` command line (click)."""
from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dlbrig")
def main():
    """dlbrig: load-balancing core and the hardware-in-the-loop rig that certifies it."""


@main.command()
@click.option("--dut", type=click.Choice(["builtin", "naive", "modbus-controller", "modbus-charger"]),
              default="builtin", show_default=True,
              help="Device under test: the built-in core as controller, the naive negative control, an "
                   "external controller over Modbus (started per case by --dut-command), or an external "
                   "charger over Modbus (--profile/--host/--port; its FS cases with --ev-sim).")
@click.option("--profile", "charger_profile", default=None, metavar="NAME",
              help="modbus-charger: the charger's register map (see the profiles in README).")
@click.option("--host", "charger_host", default="127.0.0.1", show_default=True, help="modbus-charger: its address.")
@click.option("--port", "charger_port", type=click.IntRange(1, 65535), default=None, help="modbus-charger: its port.")
@click.option("--unit", "charger_unit", type=click.IntRange(0, 255), default=None,
              help="modbus-charger: its unit id (default: the profile's).")
@click.option("--arm", is_flag=True, help="Allow writing to a device (charger, EV simulator) on a non-loopback "
                                        "address.")
@click.option("--ev-sim", "ev_sim", default=None, metavar="RESOURCE",
              help="modbus-charger: the VISA resource of an EV-side simulator plugged into the charger "
                   "(e.g. TCPIP0::127.0.0.1::5025::SOCKET; `dlbrig emulate --ev-sim CHARGER` serves one). "
                   "Runs the fault-shutdown cases FS-001..FS-012: the rig drives the EV side through it and "
                   "judges from its time-stamped event log. Without it the FS cases are skipped.")
@click.option("--dut-command", default=None, metavar="CMD",
              help="modbus-controller: the command that starts the DUT for a case; {endpoints}, {site}, "
                   "{speed}, {out} and {python} are replaced by the case's endpoints file, site spec, speed, "
                   "folder and this Python. Example: '{python} -m dlbrig.rig.cli control --endpoints "
                   "{endpoints} --site {site} --speed {speed}'.")
@click.option("--mode", type=click.Choice(["fast", "wire"]), default="fast", show_default=True,
              help="fast: virtual time, in-memory links; wire: real Modbus sockets on loopback (writes "
                   "capture.pcap). modbus-controller is always wire.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Wire mode: run the physics (and the DUT's clock) this many times faster than real time.")
@click.option("--firmware", type=click.Choice(["compliant", "noncompliant"]), default="compliant",
              show_default=True, help="Charger firmware: standard timings, or the non-compliant knobs "
                                      "(slow contactor, no watchdog, no diode check, ...).")
@click.option("--cases", "pattern", default=None, help="Only cases matching these globs, e.g. 'LIM-*,FS-00?'.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/certify", show_default=True)
@click.option("--list", "list_only", is_flag=True, help="Print the catalog and exit.")
def certify(dut, charger_profile, charger_host, charger_port, charger_unit, arm, ev_sim, dut_command, mode, speed,
            firmware, pattern, seed, out_dir, list_only):
    """Run the certification catalog and write report.html, junit.xml and summary.json.

    \b
    --dut modbus-charger judges an external charger: COM-010..012 over Modbus alone; with
    --ev-sim RESOURCE also FS-001..FS-012 (fault shutdown: contactor deadlines, diode check,
    residual current, soft overcurrent, state F, PWM spacing) through an EV-side simulator.
    Non-loopback chargers and instruments need --arm."""
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
    if dut == "modbus-controller":
        if not dut_command:
            click.echo("error: --dut modbus-controller: --dut-command is required (how to start the DUT)", err=True)
            sys.exit(2)
        mode = "wire"
        charger_cases = [c.id for c in cases if c.role != "controller"]
        if charger_cases:   # an external controller comes with our emulated chargers: judge it only
            cases = [c for c in cases if c.role == "controller"]
            click.echo(f"note: {len(charger_cases)} charger-role case(s) skipped for an external controller", err=True)
            if not cases:
                click.echo("error: --cases: no controller-role case selected", err=True)
                sys.exit(2)
    elif dut_command:
        click.echo("error: --dut-command only applies to --dut modbus-controller", err=True)
        sys.exit(2)
    if ev_sim is not None:
        from .visa.drivers import is_loopback_resource, parse_resource
        if dut != "modbus-charger":
            click.echo("error: --ev-sim only applies to --dut modbus-charger (the built-in DUTs have their "
                       "emulated EVs)", err=True)
            sys.exit(2)
        try:
            parse_resource(ev_sim)
        except ValueError as exc:
            click.echo(f"error: --ev-sim: {exc}", err=True)
            sys.exit(2)
        if not is_loopback_resource(ev_sim) and not arm:
            click.echo(f"error: refusing to drive the EV simulator at {ev_sim} (not loopback) without --arm",
                       err=True)
            sys.exit(2)
    charger_target = None
    if dut == "modbus-charger":
        from ..firmware_sim.profiles import get_profile
        from .certify.charger_probe import ChargerTarget
        from .external import is_loopback
        if not charger_profile or not charger_port:
            click.echo("error: --dut modbus-charger: --profile and --port are required", err=True)
            sys.exit(2)
        try:
            prof = get_profile(charger_profile)
        except KeyError:
            click.echo(f"error: --profile: unknown profile {charger_profile!r}", err=True)
            sys.exit(2)
        if prof.kind != "charger":
            click.echo(f"error: --profile: {charger_profile} is a {prof.kind}, not a charger", err=True)
            sys.exit(2)
        if not is_loopback(charger_host) and not arm:
            click.echo(f"error: refusing to write to {charger_host} (not loopback) without --arm", err=True)
            sys.exit(2)
        charger_target = ChargerTarget(profile=prof.name, host=charger_host, port=charger_port,
                                       unit=charger_unit if charger_unit is not None else prof.unit_ids[0],
                                       transport=prof.transport, speed=speed)
        runs = (lambda c: c.probe or (ev_sim is not None and c.family == "FS"))
        fs_skipped = [c.id for c in cases if c.family == "FS" and not runs(c)]
        skipped = [c.id for c in cases if not runs(c) and c.family != "FS"]
        cases = [c for c in cases if runs(c)]
        if fs_skipped:
            click.echo(f"note: {len(fs_skipped)} fault-shutdown case(s) skipped: they need the EV side of the "
                       f"charger; --ev-sim RESOURCE (an EV-side simulator) enables them: "
                       f"{', '.join(fs_skipped[:8])}{' ...' if len(fs_skipped) > 8 else ''}", err=True)
        if skipped:
            click.echo(f"note: {len(skipped)} case(s) need a whole site and are skipped for an "
                       f"external charger: {', '.join(skipped[:8])}{' ...' if len(skipped) > 8 else ''}", err=True)
        if not cases:
            click.echo("error: --cases: no case runs against an external charger (COM-010..COM-012 do; "
                       "FS-001..FS-012 with --ev-sim)", err=True)
            sys.exit(2)

    def progress(i, n, case, elapsed):
        click.echo(f"[{i + 1}/{n}] {case.id} {case.title} ({elapsed:.0f} s elapsed)", err=True)

    frames: dict = {}
    suite = run_suite(cases, dut=dut, firmware=firmware, seed=seed, out_dir=out_dir, progress=progress,
                      mode=mode, speed=speed, dut_command=dut_command, frames=frames,
                      charger_target=charger_target, ev_sim=ev_sim, armed=arm)
    written = {}
    try:
        from .report import write_reports
        written = write_reports(out_dir, suite, frames=frames)
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


@main.command()
@click.option("--site", "site_file", required=True, type=click.Path(dir_okay=False),
              help="The site spec (YAML or JSON: the core's spec, as in a scenario's 'site:').")
@click.option("--endpoints", "endpoints_file", required=True, type=click.Path(dir_okay=False),
              help="The devices (JSON list, as written by `dlbrig emulate --endpoints`).")
@click.option("--allocator", type=click.Choice(["builtin", "naive"]), default="builtin", show_default=True,
              help="The decision maker: the built-in core, or the naive negative control.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Run the controller's clock this many times faster than real time (to match "
                   "`dlbrig emulate --speed`).")
@click.option("--duration", type=str, default=None, help="Stop after this long (default: until Ctrl-C).")
@click.option("--arm", is_flag=True, help="Allow writing to devices on non-loopback addresses.")
def control(site_file, endpoints_file, allocator, speed, duration, arm):
    """Run the built-in site controller against Modbus devices listed in an endpoints file.

    Polls every meter and charger through its product profile, runs the allocator on the site's
    cycle, writes set-points and heartbeats. Ctrl-C / SIGTERM leave every charger at its safe current.
    """
    import asyncio

    from ..core import Site
    from ..core.site import SiteError
    from .controller import NotArmed
    from .external import EndpointsError, control_async, load_endpoints
    from .scenario.times import parse_duration

    try:
        site = Site.from_yaml(site_file)
    except FileNotFoundError:
        click.echo(f"error: {site_file}: no such file", err=True)
        sys.exit(2)
    except (SiteError, ValueError) as exc:
        click.echo(f"error: {site_file}: {exc}", err=True)
        sys.exit(2)
    try:
        endpoints = load_endpoints(endpoints_file)
        duration_ms = parse_duration(duration, allow_zero=False) if duration else None
        stats = asyncio.run(control_async(site, endpoints, speed=speed, duration_ms=duration_ms,
                                          allocator=allocator, armed=arm))
    except (EndpointsError, NotArmed) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ValueError as exc:
        click.echo(f"error: --duration: {exc}", err=True)
        sys.exit(2)
    click.echo(f"dlbrig control: {stats['cycles']} cycles, {stats['failed_transactions']} failed transactions, "
               f"cycle time median {stats['cycle_time_ms_median']} ms", err=True)


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
@click.option("--arm", is_flag=True, help="Allow writing to non-loopback devices and enabling instrument "
              "outputs (electronic loads, AC sources). Without it such a run refuses to start.")
@click.option("--endpoints", "endpoints_file", type=click.Path(dir_okay=False), default=None,
              help="Wire mode: drive devices already served elsewhere (the endpoints file of "
                   "'dlbrig emulate --endpoints') instead of serving the scenario's own.")
def run(scenario, mode, out_dir, seed, duration, speed, backend, arm, endpoints_file):
    """Run SCENARIO (a path or a built-in name) and write its trace and summary."""
    from .runner import run_fast
    from .scenario.times import parse_duration

    external = None
    if endpoints_file is not None:
        import json
        try:
            with open(endpoints_file, encoding="utf-8") as fh:
                external = json.load(fh)
            if not isinstance(external, list) or not all(isinstance(e, dict) and "device" in e for e in external):
                raise ValueError("expected a list of endpoint records with a 'device' field")
        except (OSError, ValueError) as exc:
            click.echo(f"error: --endpoints: {endpoints_file}: {exc}", err=True)
            sys.exit(2)
        mode = mode or "wire"
        if mode != "wire":
            click.echo("error: --endpoints: only with --mode wire", err=True)
            sys.exit(2)

    if duration is not None:
        try:
            parse_duration(duration)
        except ValueError as exc:
            click.echo(f"error: --duration: {exc}", err=True)
            sys.exit(2)
    sc = _load(scenario, duration=duration, seed=seed, mode=mode)
    mode = sc.mode
    if mode == "wire" and getattr(sc, "energy", None) is not None:
        click.echo(f"error: {sc.source or scenario}: energy: the energy block (tariffs, caps, battery) runs in "
                   f"fast mode only; use --mode fast", err=True)
        sys.exit(2)
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

        rec = None
        if sc.instruments:     # certification verdicts from the instruments' measurements
            from .recording import Recording
            rec = Recording.for_site(sc.name, sc.core_site)
        if mode == "fast":
            summary = run_fast(sc, out_dir, backend=backend, progress=progress, recording=rec)
        else:
            from .visa.drivers import NotArmed as InstrumentNotArmed
            from .visa.drivers import VisaError
            from .wire import run_wire
            try:
                summary = run_wire(sc, out_dir, backend=backend, speed=speed, progress=progress,
                                   armed=arm, endpoints=external, recording=rec)
            except (InstrumentNotArmed, VisaError) as exc:
                click.echo(f"\nerror: {exc}", err=True)
                sys.exit(2)
            except ValueError as exc:
                if external is None:
                    raise
                click.echo(f"\nerror: --endpoints: {exc}", err=True)
                sys.exit(2)
    over = {n: c["max_over_a"] for n, c in summary["circuits"].items() if c["max_over_a"] > 0}
    click.echo(f"{sc.name}: {summary['simulated_s']:.0f} s simulated in {summary['wall_s']:.1f} s "
               f"({summary['speed_x_realtime']}x real time), {summary['energy_delivered_kwh']} kWh delivered, "
               f"{len(summary['sessions'])} sessions, failed transactions {summary['failed_transactions']}")
    click.echo(f"limit: " + ("never above" if not over else
                             ", ".join(f"{n} up to +{v:.2f} A" for n, v in over.items())))
    if summary.get("ground_truth") == "instruments":
        click.echo("ground truth: instruments (" + ", ".join(s.name for s in sc.instruments) + ")")
        from .trace import write_json
        from .visa.bench import bench_verdicts
        verdicts = bench_verdicts(rec, external=external is not None)
        write_json(f"{out_dir}/verdicts.json", {"ground_truth": rec.ground_truth,
                                                "measured_by": rec.measured_by,
                                                "verdicts": [v.as_dict() for v in verdicts]})
        failed = [v for v in verdicts if not v.passed]
        click.echo(f"verdicts: {len(verdicts) - len(failed)} passed, {len(failed)} failed "
                   f"(from the instruments): {out_dir}/verdicts.json")
        for v in failed[:10]:
            click.echo(f"  FAIL {v.check} {v.summary}")
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
@click.option("--ev-sim", "ev_sims", multiple=True, metavar="CHARGER",
              help="Serve an EV-side simulator (SCPI, instrument evsim_CHARGER) as the EV of CHARGER (the "
                   "scenario's vehicles for it are left out); its VISA resource goes into the endpoints. "
                   "Repeatable. For `dlbrig certify --dut modbus-charger --ev-sim RESOURCE`.")
@click.option("--ev-sim-model", default="keysight_sl1040a", show_default=True,
              type=click.Choice(["keysight_sl1040a", "comemso_epts"]), help="The EV simulator's model (*IDN?).")
def emulate(scenario, host, allow_non_loopback, base_port, endpoints_file, duration, speed, ev_sims, ev_sim_model):
    """Serve SCENARIO's meters and chargers over Modbus with no built-in controller.

    Point an external controller at the endpoints; the physics (building load, EVs following their
    set-points, watchdogs) runs in real time. Ctrl-C stops the servers and leaves nothing behind.
    With --ev-sim CHARGER an emulated EV-side simulator (SCPI) is that charger's EV, for
    `dlbrig certify --dut modbus-charger --ev-sim RESOURCE` (fault-shutdown cases).
    """
    import asyncio

    from .modbus.server import check_bind_host
    from .wire import emulate_async

    sc = _load(scenario)
    if ev_sims:
        from .certify.ev_side import ev_sim_scenario
        try:
            sc = ev_sim_scenario(sc, list(dict.fromkeys(ev_sims)), ev_sim_model)
        except ValueError as exc:           # an unknown charger, or a ScenarioError
            click.echo(f"error: --ev-sim: {exc}", err=True)
            sys.exit(2)
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
            if ep["kind"] == "instrument":
                click.echo(f"{'instr':<8} {ep['device']:<16} {ep['model']:<16} {'scpi':<4} {ep['resource']}")
                continue
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


@main.command()
@click.argument("addresses", nargs=-1, required=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds to wait for each answer.")
def instruments(addresses, timeout_s):
    """Identify the instruments (*IDN?) at ADDRESSES: VISA resources (TCPIP0::host::port::SOCKET)
    or host:port. Exits 1 when any address does not answer, 2 on a malformed address."""
    from .visa.drivers import VisaError, identify, parse_resource

    resources = []
    for a in addresses:
        r = a if "::" in a else (f"TCPIP0::{a.rsplit(':', 1)[0]}::{a.rsplit(':', 1)[1]}::SOCKET" if ":" in a else a)
        try:
            parse_resource(r)
        except ValueError as exc:
            click.echo(f"error: {a}: {exc}", err=True)
            sys.exit(2)
        resources.append(r)
    failed = 0
    for r in resources:
        try:
            ident = identify(r, timeout_ms=int(timeout_s * 1000))
        except VisaError as exc:
            failed += 1
            click.echo(f"{r}  no answer: {exc}")
            continue
        kind = ident.kind or "unknown (no dlbrig driver)"
        click.echo(f"{r}  {ident.vendor} {ident.model} serial {ident.serial} firmware {ident.firmware}  [{kind}]")
    sys.exit(1 if failed else 0)


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


@main.command()
@click.argument("campaign_file", metavar="FILE")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (report.html, aggregate.json, runs/). Default: out/campaign-<name>.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes of the embedded Dask LocalCluster.")
@click.option("--scheduler", default=None, help="Use an existing Dask cluster: tcp://HOST:PORT.")
@click.option("--serial", is_flag=True, help="No cluster: run in this process, one run after another.")
@click.option("--fresh", is_flag=True, help="Ignore finished runs in --out and redo everything.")
@click.option("--list", "list_only", is_flag=True, help="Print the expanded runs and exit.")
def campaign(campaign_file, out_dir, workers, scheduler, serial, fresh, list_only):
    """Run the campaign in FILE (a matrix of scenarios x seeds x faults x DUTs) on Dask.

    Each run's result is saved as it finishes; running the same command again resumes: finished runs
    are not redone. Exit code 0 when every run passes, 1 otherwise, 2 for a bad file.
    """
    from .campaign import CampaignError, EngineError, load_campaign, run_campaign

    try:
        camp = load_campaign(campaign_file)
    except CampaignError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if list_only:
        for r in camp.runs:
            click.echo(r.run_id)
        click.echo(f"{len(camp.runs)} runs", err=True)
        return
    out_dir = out_dir or f"out/campaign-{camp.name}"

    def progress(done, total, res):
        click.echo(f"[{done}/{total}] {res['status'].upper():<5} {res['run_id']}", err=True)

    try:
        res = run_campaign(camp, out_dir, workers=workers, scheduler=scheduler, serial=serial,
                           resume=not fresh, progress=progress)
    except EngineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    c = res.aggregate["counts"]
    click.echo(f"campaign {camp.name}: {c['total']} runs, {c['pass']} pass, {c['fail']} fail, {c['error']} error"
               + (f", {c['missing']} not run (interrupted: run again to resume)" if c["missing"] else "")
               + f" ({res.executed} executed, {res.reused} reused)")
    for name, path in res.written.items():
        click.echo(f"  {name}: {path}")
    sys.exit(130 if res.interrupted else (0 if res.aggregate["verdict"] == "pass" else 1))


@main.command()
@click.argument("site_ref", metavar="SITE")
@click.option("--chargers", "counts", default="10..60", show_default=True,
              help="Charger counts: FIRST..LAST (every --step) or a list, e.g. 10,20,40.")
@click.option("--step", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--profile", default="office", show_default=True,
              help="Demand: office, hotel, residential, depot, retail, or a YAML file with the same fields.")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True)
@click.option("--battery-kwh", type=click.FloatRange(min=0), default=None, help="Add an on-site battery (0.5 C).")
@click.option("--pv-kwp", type=click.FloatRange(min=0), default=None, help="Rooftop PV (replaces the site's).")
@click.option("--contract-kw", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Contracted capacity (kW): a cap the controller respects.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--cycle", "cycle_s", type=click.IntRange(1, 900), default=60, show_default=True,
              help="Simulation cycle (s).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (plan.html, plan.json, plan.png). Default: out/plan-<site>-<profile>.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--scheduler", default=None, help="Use an existing Dask cluster: tcp://HOST:PORT.")
@click.option("--serial", is_flag=True, help="No cluster: run the counts one after another here.")
def plan(site_ref, counts, step, profile, days, battery_kwh, pv_kwp, contract_kw, seed, cycle_s, out_dir,
         workers, scheduler, serial):
    """How many chargers can SITE's connection carry? Sweeps charger counts on simulated demand.

    SITE is a planning site file (grid connection, base load, PV, chargers, energy) or a built-in
    scenario name / scenario file. Runs the core at a 60 s cycle with simple EV models (not the
    full rig: see rig/plan/sim.py) on Dask.
    """
    from pathlib import Path

    from .campaign import EngineError
    from .plan import PROFILES, PlanError, load_site, parse_counts, profile_from_dict, run_plan
    from .plan.report import write_plan_report
    from .plan.site import check_energy

    def fail(msg):
        click.echo(f"error: {msg}", err=True)
        sys.exit(2)

    try:
        site = load_site(site_ref)
    except PlanError as exc:
        fail(str(exc))
    try:
        count_list = parse_counts(counts, step)
    except ValueError as exc:
        fail(f"--chargers: {exc}")
    if profile in PROFILES:
        prof = PROFILES[profile]
    elif Path(profile).is_file():
        import yaml
        try:
            prof = profile_from_dict(yaml.safe_load(Path(profile).read_text()) or {}, Path(profile).stem)
        except (ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
            fail(f"{profile}: {exc}")
    else:
        fail(f"--profile: {profile!r} is neither a built-in profile ({', '.join(PROFILES)}) nor a file")
    energy = dict(site.energy)
    if battery_kwh:
        energy["battery"] = {"capacity_kwh": battery_kwh}
    if contract_kw:
        energy["contract"] = {"kw": contract_kw}
    if pv_kwp is not None:
        site.pv_kwp = pv_kwp

    def energy_err(path, problem):
        fail(f"energy.{'.'.join(map(str, path))}: {problem}")

    check_energy(energy, energy_err)
    site.energy = energy
    out_dir = out_dir or f"out/plan-{site.name}-{prof.name}"

    def progress(done, total, r):
        click.echo(f"[{done}/{total}] {r['chargers']} chargers: {(r['served_share'] or 0) * 100:.1f} % served, "
                   f"peak {r['peak_15min_kw']:.0f} kW ({r['wall_s']} s)", err=True)

    try:
        result = run_plan(site, count_list, prof, days, seed=seed, cycle_s=cycle_s, workers=workers,
                          scheduler=scheduler, serial=serial, progress=progress)
    except EngineError as exc:
        fail(str(exc))
    written = write_plan_report(out_dir, result)
    click.echo(f"{'chargers':>8} {'served':>7} {'deliv.':>7} {'wait':>6} {'worst':>6} {'peak kW':>8} "
               f"{'15-min':>7} {'over s':>7} {'cost EUR':>9}")
    for r in result["results"]:
        click.echo(f"{r['chargers']:>8} {(r['served_share'] or 0) * 100:>6.1f}% {(r['delivered_share'] or 0) * 100:>6.1f}% "
                   f"{r['wait_mean_min']:>6.1f} {r['wait_max_min']:>6.0f} {r['peak_kw']:>8.1f} {r['peak_15min_kw']:>7.1f} "
                   f"{r['contract_exceedance_with_ev_s'] + r['main_over_s']:>7.0f} {r['total_cost_eur']:>9.0f}")
    click.echo(result["recommendation"]["text"])
    for name, path in written.items():
        click.echo(f"  {name}: {path}")


if __name__ == "__main__":
    main()
