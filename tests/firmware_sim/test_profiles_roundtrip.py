"""Every register of every profile: encode/decode round trip, readable through the engine,
writable with a valid value, and bound only to points of the vocabulary."""
import math
import time

import pytest

from dlbrig.firmware_sim.profiles import (PROFILES, VOCABULARY, DeviceImage, ModbusError,
                                          get_profile)
from dlbrig.firmware_sim.profiles.base import check_value
from dlbrig.firmware_sim.profiles.codec import decode, encode

METER = {k: 1.0 for k in VOCABULARY["meter"][0]}
CHARGER = {k: 0.0 for k in VOCABULARY["charger"][0]}
CHARGER.update(cp_state="C2", status="charging", error_code=0, phases_in_use=3,
               phases_setting=3, in_failsafe=False, enabled=True, connector_locked=True,
               contactor_closed=True, vehicle_connected=True, serial="42",
               firmware_version="1.0.0", model_name="M", current_l1_a=16.0,
               voltage_l1_v=230.0, hw_max_current_a=32.0, watchdog_timeout_s=10.0)


class Recorder(dict):
    """points() mapping that remembers which names a profile looked up."""

    def __init__(self, base, seen):
        super().__init__(base)
        self.seen = seen

    def __getitem__(self, k):
        self.seen.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self.seen.add(k)
        return super().get(k, default)


class Dev:
    def __init__(self, kind, seen, written):
        self.base = dict(METER if kind == "meter" else CHARGER)
        self.seen, self.written = seen, written

    def points(self):
        return Recorder(self.base, self.seen)

    def write_point(self, name, value, now_ms):
        self.written.append((name, value))


def image_for(p, seen, written):
    units = {}
    for uid, role in p.units:
        if uid == p.station_unit:
            continue
        devs = [Dev(p.kind, seen, written) for _ in range(p.connectors)]
        units[uid] = devs if p.connectors > 1 else devs[0]
    return DeviceImage(p, units)


def unit_for(p, reg):
    for uid, role in p.units:
        if reg.role in (None, role):
            return uid
    raise AssertionError(reg)


CASES = [(name, i) for name in sorted(PROFILES) for i in range(len(PROFILES[name].registers))]


def _sample(reg):
    if reg.dtype == "str":
        return "AB" * reg.count
    if reg.dtype == "bool":
        return True
    for cand in (16, 1, 0, 3, 60, 6, 10, 1000, 4, 6000):
        v = cand * reg.scale if reg.dtype.startswith(("u", "i")) else float(cand)
        if check_value(reg, v):
            return v
    raise AssertionError(f"no valid sample for {reg}")


@pytest.mark.parametrize("name,idx", CASES, ids=[f"{n}-{PROFILES[n].registers[i].table}-"
                                                 f"{PROFILES[n].registers[i].address}"
                                                 for n, i in CASES])
def test_register_roundtrip(name, idx):
    p = PROFILES[name]
    reg = p.registers[idx]
    wo = p.word_order_of(reg)
    value = _sample(reg)
    words = encode(value, reg.dtype, wo, reg.scale, reg.count)
    assert len(words) == reg.count
    back = decode(words, reg.dtype, wo, reg.scale)
    if isinstance(value, float):
        assert math.isclose(back, value, rel_tol=1e-6, abs_tol=1e-9)
    else:
        assert back == value
    assert encode(back, reg.dtype, wo, reg.scale, reg.count) == words


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_register_served_and_vocabulary_only(name):
    p = get_profile(name)
    seen, written = set(), []
    img = image_for(p, seen, written)
    reads, writes = VOCABULARY[p.kind]
    for reg in p.registers:
        uid = unit_for(p, reg)
        if reg.readable:
            words = img.read(uid, reg.table, reg.address, reg.count)
            assert len(words) == reg.count
            assert words == encode(img.get(uid, reg.address, reg.table), reg.dtype,
                                   p.word_order_of(reg), reg.scale, reg.count, saturate=True) \
                or reg.dtype in ("f32", "f64")
        if reg.writable:
            value = _sample(reg)
            words = encode(value, reg.dtype, p.word_order_of(reg), reg.scale, reg.count)
            if reg.table == "coil":
                words = [1]
            img.write(uid, reg.table, reg.address, words)
            if reg.target is not None:
                assert written and written[-1][0] in (reg.target, "heartbeat")
                assert any(n == reg.target for n, _ in written)
            elif reg.readable and reg.fn is None and reg.group_fn is None:
                assert img.get(uid, reg.address, reg.table) == decode(
                    words, reg.dtype, p.word_order_of(reg), reg.scale)
        if reg.writable and reg.target is not None:
            assert reg.target in writes, (name, reg.name, reg.target)
    assert seen <= reads | writes, seen - (reads | writes)
    assert {n for n, _ in written} <= writes


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_whole_blocks_readable(name):
    """A monitoring tool reading every answering block in max-size requests gets answers."""
    p = get_profile(name)
    img = image_for(p, set(), [])
    if p.single_value_reads:
        pytest.skip("product answers single values only")
    for uid in img.unit_ids:
        for table in ("input", "holding"):
            u = img._units[uid]
            for start, end in u.blocks.get(table, ()):
                a = start
                while a < end:
                    n = min(p.max_read, end - a)
                    try:
                        assert len(img.read(uid, table, a, n)) == n
                    except ModbusError as e:
                        assert p.reserved == "exception" and e.code == 2
                    a += n


def test_throughput_100_devices():
    """The rig serves 100 devices at >= 2,000 transactions/s: stay well inside that."""
    seen = set()
    images = [image_for(get_profile(n), seen, []) for n in
              ("sdm630", "alfen_ng9xx", "keba_p30", "heidelberg_ec", "em24") * 20]
    reqs = {"sdm630": (1, "input", 0, 80), "alfen_ng9xx": (1, "holding", 1200, 16),
            "keba_p30": (255, "holding", 1008, 2), "heidelberg_ec": (1, "input", 5, 14),
            "em24": (1, "input", 0, 0x5E)}
    t0 = time.perf_counter()
    n = 0
    while n < 2000:
        for img in images:
            img.read(*reqs[img.profile.name])
            n += 1
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"{n} transactions took {elapsed:.3f} s"
