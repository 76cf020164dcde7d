"""dlbrig.rig.scenario: scenario files (YAML) -> a validated :class:`Scenario`.

A scenario is a site (the core spec of ``dlbrig.core.Site.from_dict``), the devices that emulate
its meters and chargers (a product profile each, on TCP or an RTU bus), the building loads, the
vehicles (explicit, or random arrival streams), and a timeline of steps (plug, faults, load steps)::

    name: small_garage
    description: |
      Two chargers behind a 32 A fuse.       # first line = summary in list_scenarios()
    start: "Mon 07:00"                       # time of day at t = 0 (day 0 = Monday)
    duration: 2h
    site:
      circuits: [{name: main, limit_a: 32, meter: true, fallback_base_a: 10}]
      chargers:
        - {name: cp1, circuit: main, max_a: 16}
        - {name: "cp{n}", count: 2, first: 2, circuit: main, max_a: 16}   # cp2, cp3
    meters:   [{circuit: main, profile: sdm630}]                  # rtu, unit 1, bus rs485-1
    chargers: [{charger: "cp*", profile: keba_p30}]               # glob: every cp
    loads:    [{circuit: main, kind: office, peak_a: 12}]
    vehicles: [{id: ev1, preset: compact_1p, charger: cp1, arrive: "07:30", depart: "+1h30m"}]
    arrivals: [{count: 4, window: ["07:10", "08:00"], dwell: [30m, 1h], energy_kwh: [5, 15]}]
    timeline:
      - at 07:45 meter main stale for 30s
      - base main step +20A for 10m at +50m

Times (``times`` module): ``+5m`` from the start, ``HH:MM[:SS]`` on the start's day, ``Tue 07:30``
(first such weekday on/after the start), ``d1 07:30`` (day index).  Everything derived is integer
ms: ``Scenario.start_ms`` (since Monday 00:00: the clock of ``firmware_sim.loads``),
``duration_ms``, ``Step.at_ms`` / ``VehicleSpec.arrive_ms`` / ``depart_ms`` / ``LoadSpec.at_ms``
(since the scenario start; the models' absolute time is ``start_ms + t``).

Errors: :class:`ScenarioError` ``FILE:LINE: FIELD: PROBLEM``.  Top-level keys starting with
``x-`` are ignored (a place for YAML anchors).
"""
from .errors import ScenarioError
from .loader import list_scenarios, load_scenario, scenario_json_schema, validate
from .model import (ArrivalSpec, ChargerDevice, Expansion, LoadSpec, MeterDevice, Scenario, Step,
                    VehicleSpec)
from .timeline import USAGE as TIMELINE_USAGE
from .timeline import VERBS as TIMELINE_VERBS

__all__ = ["load_scenario", "list_scenarios", "scenario_json_schema", "validate", "ScenarioError",
           "Scenario", "Step", "MeterDevice", "ChargerDevice", "LoadSpec", "VehicleSpec",
           "ArrivalSpec", "Expansion", "TIMELINE_USAGE", "TIMELINE_VERBS"]
