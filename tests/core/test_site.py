"""Site specification: happy paths and every bad spec raising a ValueError that names field and problem."""
from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, strategies as st

import core_helpers as H
from dlbrig.core import Allocator, Site, SiteError, model


# ------------------------------------------------------------------------------------ happy paths
def test_readme_example_converts_units_once(example_spec):
    site = Site.from_dict(example_spec)
    assert site.circuit_names == ["main", "garage"]
    main, garage = site.circuits
    assert main.parent == model.NONE and garage.parent == 0
    assert main.limit_ma == [63000] * 3 and main.margin_ma == 1000
    assert main.has_meter == 1 and main.power_limit_w == 40000
    assert main.fallback_base_ma == [25000] * 3
    assert garage.limit_ma == [32000] * 3 and garage.has_meter == 0
    cp1, cp2 = site.chargers
    assert site.charger_names == ["cp1", "cp2"]
    assert (cp1.circuit, cp1.phases, cp1.phase_map[:3], cp1.max_ma) == (1, 3, [0, 1, 2], 32000)
    assert (cp2.circuit, cp2.phases, cp2.phase_map[0], cp2.min_ma) == (1, 1, 1, 6000)
    assert site.metered == ["main"]
    assert site.cycle_ms == 1000
    assert site.params.meter_timeout_ms == 10000 and site.params.policy == model.POLICY_FAIR


def test_defaults_and_fractional_amps():
    site = Site.from_dict({"circuits": [{"name": "m", "limit_a": [16.5, 10, 0.1]}],
                           "chargers": [{"name": "k", "circuit": "m", "max_a": 16, "step_a": 0.1,
                                         "min_a": 6.1}]})
    assert site.circuits[0].limit_ma == [16500, 10000, 100]
    k = site.chargers[0]
    assert (k.min_ma, k.max_ma, k.step_ma, k.phases, k.weight, k.priority) == (6100, 16000, 100, 3, 1, 0)


def test_children_listed_before_parents_are_reordered_parents_first():
    site = Site.from_dict({"circuits": [{"name": "leaf", "parent": "mid", "limit_a": 16},
                                        {"name": "mid", "parent": "root", "limit_a": 32},
                                        {"name": "root", "limit_a": 63}],
                           "chargers": [{"name": "k", "circuit": "leaf", "max_a": 16}]})
    assert site.circuit_names == ["root", "mid", "leaf"]
    assert [c.parent for c in site.circuits] == [model.NONE, 0, 1]
    assert site.chargers[0].circuit == 2


def test_every_policy_and_phase_spelling():
    for name, code in model.POLICIES.items():
        spec = H.example_spec()
        spec["policy"] = name
        assert Site.from_dict(spec).params.policy == code
    spec = H.example_spec()
    spec["chargers"][0]["phase_map"] = ["l3", 1, "L2"]
    assert Site.from_dict(spec).chargers[0].phase_map == [2, 0, 1]


def test_from_yaml(tmp_path, example_spec):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(example_spec))
    assert Site.from_yaml(path) == Site.from_dict(example_spec)
    Allocator(Site.from_yaml(path)).step(0)
    text = """
policy: fair
circuits:
  - {name: main, limit_a: 63, margin_a: 1, meter: true, power_limit_kw: 40, fallback_base_a: [25, 25, 25]}
  - {name: garage, parent: main, limit_a: [32, 32, 32]}
chargers:
  - {name: cp1, circuit: garage, phases: 3, max_a: 32}
  - {name: cp2, circuit: garage, phases: 1, phase_map: [L2], max_a: 32}
"""
    path.write_text(text)
    assert Site.from_yaml(path).circuits == Site.from_dict(example_spec).circuits


def test_from_yaml_rejects_broken_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("circuits: [ {name: main, limit_a: 63\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        Site.from_yaml(path)


# ------------------------------------------------------------------------------------ bad specs
def _bad(mutate):
    spec = H.example_spec()
    mutate(spec)
    return spec


def _deep(n):
    circuits = [{"name": "c0", "limit_a": 100}]
    for i in range(1, n):
        circuits.append({"name": f"c{i}", "parent": f"c{i - 1}", "limit_a": 100})
    return {"circuits": circuits, "chargers": [{"name": "k", "circuit": f"c{n - 1}", "max_a": 16}]}


BAD = {
    "unknown parent": (_bad(lambda s: s["circuits"][1].update(parent="mian")),
                       r"circuits\[1\] \(garage\)\.parent", "unknown circuit 'mian'"),
    "cycle": ({"circuits": [{"name": "a", "parent": "b", "limit_a": 10}, {"name": "b", "parent": "a", "limit_a": 10}]},
              r"\.parent", "cycle"),
    "self parent": ({"circuits": [{"name": "a", "parent": "a", "limit_a": 10}]}, r"\(a\)\.parent", "cycle"),
    "duplicate circuit": (_bad(lambda s: s["circuits"][1].update(name="main")), r"circuits\[1\]\.name",
                          "duplicate circuit name 'main'"),
    "duplicate charger": (_bad(lambda s: s["chargers"][1].update(name="cp1")), r"chargers\[1\]\.name",
                          "duplicate charger name 'cp1'"),
    "negative limit": (_bad(lambda s: s["circuits"][0].update(limit_a=-1)), r"\(main\)\.limit_a", ">= 0"),
    "negative phase limit": (_bad(lambda s: s["circuits"][1].update(limit_a=[32, -3, 32])),
                             r"\(garage\)\.limit_a\[1\]", ">= 0"),
    "NaN limit": (_bad(lambda s: s["circuits"][0].update(limit_a=math.nan)), r"\(main\)\.limit_a", "finite"),
    "inf limit": (_bad(lambda s: s["circuits"][0].update(limit_a=math.inf)), r"\(main\)\.limit_a", "finite"),
    "NaN max": (_bad(lambda s: s["chargers"][0].update(max_a=math.nan)), r"\(cp1\)\.max_a", "finite"),
    "negative margin": (_bad(lambda s: s["circuits"][0].update(margin_a=-1)), r"\(main\)\.margin_a", ">= 0"),
    "string limit": (_bad(lambda s: s["circuits"][0].update(limit_a="63")), r"\(main\)\.limit_a", "number"),
    "min > max": (_bad(lambda s: s["chargers"][0].update(min_a=20, max_a=16)), r"\(cp1\)\.min_a", "> max_a"),
    "1p with 3 phases in map": (_bad(lambda s: s["chargers"][1].update(phase_map=["L1", "L2", "L3"])),
                                r"\(cp2\)\.phase_map", "1 phase"),
    "3p with 1 phase in map": (_bad(lambda s: s["chargers"][0].update(phase_map=["L1"])),
                               r"\(cp1\)\.phase_map", "3 phase"),
    "3p map repeats a phase": (_bad(lambda s: s["chargers"][0].update(phase_map=["L1", "L1", "L2"])),
                               r"\(cp1\)\.phase_map", "each of L1, L2, L3 once"),
    "unknown phase": (_bad(lambda s: s["chargers"][1].update(phase_map=["L4"])), r"\(cp2\)\.phase_map\[0\]",
                      "L1, L2 or L3"),
    "phases 2": (_bad(lambda s: s["chargers"][0].update(phases=2)), r"\(cp1\)\.phases", "1 or 3"),
    "unknown policy": (_bad(lambda s: s.update(policy="fastest")), r"^policy", "unknown policy 'fastest'"),
    "unknown site key": (_bad(lambda s: s.update(polcy="fair")), r"^site", "unknown key 'polcy'"),
    "unknown circuit key": (_bad(lambda s: s["circuits"][0].update(limt_a=3)), r"circuits\[0\]",
                            "unknown key 'limt_a'"),
    "unknown charger key": (_bad(lambda s: s["chargers"][0].update(maxa=3)), r"chargers\[0\]", "unknown key 'maxa'"),
    "charger on unknown circuit": (_bad(lambda s: s["chargers"][0].update(circuit="garge")),
                                   r"\(cp1\)\.circuit", "unknown circuit 'garge'"),
    "tree deeper than 16": (_deep(17), r"circuits\[16\]\.parent", "deeper"),
    "min not on step grid": (_bad(lambda s: s["chargers"][0].update(step_a=4)), r"\(cp1\)\.min_a",
                             "not a multiple of step_a"),
    "max not on step grid": (_bad(lambda s: s["chargers"][0].update(max_a=31.5)), r"\(cp1\)\.max_a",
                             "not a multiple of step_a"),
    "missing limit": (_bad(lambda s: s["circuits"][1].pop("limit_a")), r"\(garage\)\.limit_a", "required"),
    "missing max": (_bad(lambda s: s["chargers"][0].pop("max_a")), r"\(cp1\)\.max_a", "required"),
    "no circuits": ({"circuits": []}, r"^circuits", "non-empty"),
    "weight 0": (_bad(lambda s: s["chargers"][0].update(weight=0)), r"\(cp1\)\.weight", ">= 1"),
    "weight 17": (_bad(lambda s: s["chargers"][0].update(weight=17)), r"\(cp1\)\.weight", "<= 16"),
    "priority 256": (_bad(lambda s: s["chargers"][0].update(priority=256)), r"\(cp1\)\.priority", "<= 255"),
    "1p switching": (_bad(lambda s: s["chargers"][1].update(switch_phases=True)), r"\(cp2\)\.switch_phases",
                     "only a 3-phase"),
    "meter not bool": (_bad(lambda s: s["circuits"][0].update(meter="yes")), r"\(main\)\.meter", "true or false"),
    "limit 3 values": (_bad(lambda s: s["circuits"][0].update(limit_a=[63, 63])), r"\(main\)\.limit_a", "3 values"),
    "negative timeout": (_bad(lambda s: s.update(meter_timeout_s=-1)), r"^meter_timeout_s", ">= 0"),
    "huge current": (_bad(lambda s: s["circuits"][0].update(limit_a=3000)), r"\(main\)\.limit_a", "<= 2000"),
    "voltage": (_bad(lambda s: s.update(voltage_v=50)), r"^voltage_v", ">= 100"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_names_field_and_problem(case):
    spec, field_re, problem = BAD[case]
    with pytest.raises(ValueError) as info:
        Site.from_dict(spec)
    err = info.value
    assert isinstance(err, SiteError)
    assert problem in str(err), str(err)
    import re
    assert re.search(field_re, err.field), (err.field, field_re)
    assert str(err).startswith(err.field)


def test_depth_16_is_fine():
    Site.from_dict(_deep(16))


@H.profile(max_examples=60)
@given(st.sampled_from(sorted(BAD)), st.integers(0, 3))
def test_a_bad_field_is_never_silently_accepted_whatever_else_is_valid(case, extra_chargers):
    """A bad spec stays bad when valid chargers are added around it: the error is about the same field."""
    spec, field_re, problem = copy.deepcopy(BAD[case])
    for i in range(extra_chargers):
        if spec.get("circuits"):
            spec.setdefault("chargers", []).append(
                {"name": f"extra{i}", "circuit": spec["circuits"][0].get("name", "x"), "max_a": 16})
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Site.from_dict(spec)


@H.profile(max_examples=80)
@given(H.sites_st(max_chargers=20))
def test_generated_valid_sites_build_on_both_backends(site):
    """Whatever validates at the integer level also initialises the C core (same limits as dlb_init)."""
    Allocator(site, backend="c")
    Allocator(site, backend="reference")
