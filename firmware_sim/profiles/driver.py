"""Controller-side drivers: the inverse of a profile, for a site controller (Modbus master).

A profile says how a product *encodes* its state into registers; a driver says which registers a
controller reads, how it decodes them back into the allocator's vocabulary, and what it writes.
It is derived from the same :class:`~.base.Profile` data, so adding a product stays adding a
profile (with a small ``driver=`` spec next to its encoders):

* **Everything bound directly to a vocabulary point is found automatically**: a register whose
  ``point`` is ``current_l1_a`` (no ``fn``) is read and scaled back; the writable register whose
  target is ``setpoint_a`` is the set-point; ``safe_current_a`` / ``watchdog_timeout_s`` targets
  are the failsafe configuration; ``phases_setting`` the phase switch. Dtype, word order and
  scale come from the register, so a driver can never disagree with its emulator.
* **Product encodings need a small spec** (:class:`ChargerSpec` / :class:`MeterSpec`), kept in the
  product module: which product-coded registers the state decoder reads (KEBA 1000 + 1004, Alfen
  1201, ...), the decoder itself (next to the encoder), how the product pauses (0 A or an enable
  register), its current range, phase codes, and how its watchdog is kept fed.

Pure code: no sockets, no clock. The caller executes the plan::

    drv = driver_for("keba_p30")                     # unit None -> the product's device unit
    responses = [link.read(drv.unit, t, a, n) for t, a, n in drv.read_plan()]
    reading = drv.decode(responses)                  # ChargerReading(state=..., currents_a=...)
    for table, address, words in drv.setpoint_writes(16.0):
        link.write(drv.unit, table, address, words)

Read plans: one request per run of registers the product lets a master read in one go (within
``max_read``, inside one answering block, never across an address that would raise an exception,
one value per request for ``single_value_reads`` products such as KEBA).

Set-points: amps are floored to the product's resolution (never above what the allocator gave),
clamped to ``max_current_a``; anything below ``min_current_a`` (including 0) pauses: the
set-point register at 0 for products that accept 0, else the enable register at "off" (a
resume writes the set-point, then "on"). The driver is stateless for set-points (idempotent
writes), and remembers only the watchdog timeout it configured (for the heartbeat interval and
KEBA's timeout-rewrite heartbeat).

Heartbeat modes (``ChargerDriver.heartbeat_mode``, derived from the profile's :class:`~.base.Watchdog`
unless the spec says otherwise):

* ``"setpoint"``  rewriting the set-point feeds the watchdog (Alfen 1210 validity, CHARX any
  write): ``heartbeat_writes() == []`` and ``heartbeat_is_setpoint``;
* ``"register"``  write 1 to a dedicated alive register (Vestel 6000, dlbrig generic 10);
* ``"timeout"``   rewrite the configured failsafe timeout (KEBA 5018, as evcc does);
* ``"poll"``      any request feeds it (Heidelberg, ABB): the read plan itself is the heartbeat,
  polling at least every ``heartbeat_interval_s`` (``heartbeat_by_poll``);
* ``"none"``      no watchdog.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .base import READ_FC, Profile, Register, check_value
from .codec import CodecError, decode, decoder, encode, encoder

__all__ = [
    "Request", "Write", "DecodeError", "ChargerReading", "ChargerSpec", "MeterSpec",
    "ChargerDriver", "MeterDriver", "driver_for", "charging_or_suspended",
    "CHARGING_THRESHOLD_A", "STATES",
]

Request = tuple[str, int, int]          # (table, address, count) for reads
Write = tuple[str, int, list[int]]      # (table, address, words)

#: The allocator's charger states (``firmware_sim.evse.CHARGER_STATUSES``).
STATES = ("disconnected", "connected_idle", "charging", "ev_suspended", "fault", "unavailable")

#: A charger energised for the EV (state C/D with the contactor closed) that draws less than this
#: on every conductor is reported as "ev_suspended" (the EV model's ``charging_threshold_a``).
CHARGING_THRESHOLD_A = 1.0

_INT_MAX = {"u16": 0xFFFF, "i16": 0x7FFF, "u32": 0xFFFF_FFFF, "i32": 0x7FFF_FFFF,
            "u64": 0xFFFF_FFFF_FFFF_FFFF, "i64": 0x7FFF_FFFF_FFFF_FFFF}
_MAX_CHARGER_CURRENT_A = 1000.0   # plausibility limit for charger current readings


class DecodeError(ValueError):
    """Responses that do not decode into a plausible reading (NaN, garbage, unknown codes)."""


def charging_or_suspended(raw: Mapping[str, Any], threshold_a: float = CHARGING_THRESHOLD_A) -> str:
    """"charging" if any conductor carries at least ``threshold_a``, else "ev_suspended"."""
    cur = raw.get("currents_a") or [raw.get(f"current_l{i}_a", 0.0) for i in (1, 2, 3)]
    return "charging" if max(abs(float(x)) for x in cur) >= threshold_a else "ev_suspended"


# --- specs (data kept in the product modules) ---------------------------------------------------
@dataclass(frozen=True)
class ChargerSpec:
    """What a charger driver cannot derive from the register map alone.

    ``reads``: (table, address) of product-coded registers the status decoder needs; their value
    appears in ``raw`` under the register's ``name``. ``status(raw) -> state`` is the decoder
    (``raw`` also holds ``currents_a`` and every auto-read point). ``phases``: (table, address,
    product value -> 1/3) for a product-coded phase register; otherwise ``phases_in_use`` /
    ``phases_setting`` registers bound directly are used. Addresses of a multi-connector product
    are given for connector 1 and shifted by ``slot_stride`` per connector.
    """

    status: Callable[[Mapping[str, Any]], str]
    reads: tuple[tuple[str, int], ...] = ()
    phases: tuple[str, int, Callable[[Any], int]] | None = None
    min_current_a: float = 6.0
    max_current_a: float = 32.0
    pause: str = "zero"                                   # "zero" | "enable"
    enable_codes: tuple[int, int] = (0, 1)                # (off, on) written to the enable register
    phase_codes: tuple[tuple[int, int], ...] = ((1, 1), (3, 3))
    heartbeat: str | None = None                          # None: derive from the Watchdog
    heartbeat_fraction: float = 0.5                       # interval = timeout * fraction
    slot_stride: int = 0
    read_setpoint: bool = True                            # read back the set-point if readable
    notes: str = ""

    def __post_init__(self) -> None:
        if self.pause not in ("zero", "enable"):
            raise ValueError("pause must be 'zero' or 'enable'")
        if self.heartbeat not in (None, "setpoint", "register", "timeout", "poll", "none"):
            raise ValueError(f"unknown heartbeat mode {self.heartbeat!r}")


@dataclass(frozen=True)
class MeterSpec:
    """How a meter's currents are read back.

    ``sign``: "power" = the product may report |I|; the sign of each phase current is taken from
    that phase's active power (or the total power when the map has no per-phase power);
    "signed" = the currents are signed as reported. Plausibility limits reject garbage; the
    phase voltages are read for the check only when that adds no request.
    """

    sign: str = "power"
    max_current_a: float = 10000.0
    max_voltage_v: float = 1000.0
    check_voltage: bool = True
    notes: str = ""

    def __post_init__(self) -> None:
        if self.sign not in ("power", "signed"):
            raise ValueError("sign must be 'power' or 'signed'")


_DEFAULT_METER_SPEC = MeterSpec()


# --- readings -------------------------------------------------------------------------------------
@dataclass
class ChargerReading:
    state: str
    currents_a: list[float]
    applied_a: float | None = None
    setpoint_a: float | None = None
    phases: int | None = None
    raw: dict = field(default_factory=dict)


# --- shared machinery -----------------------------------------------------------------------------
def _resolve(profile: Profile | str) -> Profile:
    if isinstance(profile, Profile):
        return profile
    from . import get_profile   # late: the package imports the product modules, which import us
    return get_profile(profile)


def _default_unit(p: Profile) -> int:
    for uid, role in p.units:
        if uid != p.station_unit and role == p.default_role:
            return uid
    for uid, _ in p.units:
        if uid != p.station_unit:
            return uid
    return p.units[0][0]


def _direct(reg: Register) -> bool:
    """Read value is the vocabulary value (after scale): no product encoding function."""
    return reg.fn is None and reg.group_fn is None and reg.clock_fn is None


class _Layout:
    """The register map one unit (role) and connector slot answers, as the engine builds it."""

    def __init__(self, p: Profile, role: str, slot_n: int) -> None:
        self.p, self.role, self.slot_n = p, role, slot_n
        self.maps: dict[str, dict[int, Register]] = {}
        for reg in p.registers:
            if reg.role is not None and reg.role != role:
                continue
            m = self.maps.setdefault(reg.table, {})
            for a in range(reg.address, reg.end):
                m.setdefault(a, reg)
        self.blocks: dict[str, tuple[tuple[int, int], ...]] = {}
        for table, m in self.maps.items():
            if p.blocks is not None:
                self.blocks[table] = tuple((s, e) for t, s, e in p.blocks
                                           if t == table and any(s <= a < e for a in m))
            else:
                self.blocks[table] = ((min(m), max(m) + 1),)

    def reg_at(self, table: str, address: int) -> Register:
        reg = self.maps.get(table, {}).get(address)
        if reg is None or reg.address != address:
            raise KeyError(f"{self.p.name}: no {table} register starting at {address}")
        return reg

    def find(self, point: str, *, writable: bool = False) -> Register | None:
        """The register of this unit/slot bound to ``point`` (read: directly; write: as target)."""
        for reg in self.p.registers:
            if reg.role is not None and reg.role != self.role:
                continue
            if reg.slot != self.slot_n:
                continue
            if writable:
                if reg.writable and reg.target == point:
                    return reg
            elif reg.readable and reg.point == point and _direct(reg):
                return reg
        return None

    def _block_of(self, table: str, a: int) -> tuple[int, int] | None:
        for s, e in self.blocks.get(table, ()):
            if s <= a < e:
                return s, e
        return None

    def fillable(self, table: str, a: int) -> bool:
        """An address a read may cover without an exception (it answers, or fills)."""
        reg = self.maps.get(table, {}).get(a)
        if self._block_of(table, a) is None:
            return False
        if reg is not None and reg.readable:
            return True
        return self.p.reserved != "exception"

    def plan(self, regs: Sequence[Register]) -> tuple[list[Request], dict[tuple[str, int], tuple[int, int]]]:
        """Requests covering ``regs``, and register -> (request index, word offset)."""
        p = self.p
        requests: list[list] = []
        where: dict[tuple[str, int], tuple[int, int]] = {}
        by_table: dict[str, list[Register]] = {}
        for r in regs:
            lst = by_table.setdefault(r.table, [])
            if all(x.address != r.address for x in lst):
                lst.append(r)
        for table in sorted(by_table):
            fc = READ_FC[table]
            if fc not in p.function_codes:
                raise ValueError(f"{p.name}: {table} registers but no FC{fc:02d}")
            limit = p.max_read_bits if fc <= 2 else p.max_read
            cur: list | None = None
            for r in sorted(by_table[table], key=lambda x: x.address):
                if cur is not None and self._can_extend(table, cur, r, limit):
                    cur[2] = r.end - cur[1]
                else:
                    if r.count > limit:
                        raise ValueError(f"{p.name}: {r.name} ({r.count} registers) exceeds max_read")
                    cur = [table, r.address, r.count]
                    requests.append(cur)
                where[(table, r.address)] = (len(requests) - 1, r.address - cur[1])
        return [tuple(q) for q in requests], where  # type: ignore[misc]

    def _can_extend(self, table: str, cur: list, r: Register, limit: int) -> bool:
        if self.p.single_value_reads:
            return False
        start, end = cur[1], cur[1] + cur[2]
        if r.end - start > limit:
            return False
        blk = self._block_of(table, start)
        if blk is None or self._block_of(table, r.address) != blk:
            return False
        return all(self.fillable(table, a) for a in range(end, r.address))


def _decode_reg(p: Profile, reg: Register, words: Sequence[int], compiled: dict | None = None) -> Any:
    """Decoded value; a multi-register integer of all ones is the "not available" pattern
    (0xFFFFFFFF Bender/KEBA, -1 CHARX/Alfen) and decodes as NaN. ``compiled``: a dict to keep
    the register's compiled decoder in (codec.decoder: same values, decided once)."""
    if reg.dtype in _INT_MAX and len(words) > 1 and all(w == 0xFFFF for w in words):
        return math.nan
    try:
        if compiled is not None:
            dec = compiled.get(id(reg))
            if dec is None:
                dec = compiled[id(reg)] = decoder(reg.dtype, reg.word_order or p.word_order, reg.scale)
            return dec(list(words))
        return decode(list(words), reg.dtype, reg.word_order or p.word_order, reg.scale)
    except CodecError as exc:
        raise DecodeError(f"{p.name} {reg.name}: {exc}") from exc


def _field_decoder(p: Profile, reg: Register, compiled: dict):
    """``lambda words: _decode_reg(p, reg, words, compiled)`` for the words of one field as a
    tuple of the register's length (what the memo paths pass), with the not-available pattern
    and the decoder found once; anything else takes _decode_reg itself."""
    dec = compiled.get(id(reg))
    if dec is None:
        dec = compiled[id(reg)] = decoder(reg.dtype, reg.word_order or p.word_order, reg.scale)
    n = reg.count
    na = (0xFFFF,) * n if reg.dtype in _INT_MAX and n > 1 else None
    nan = math.nan

    def field(words: Any) -> Any:
        if words.__class__ is not tuple or len(words) != n:
            return _decode_reg(p, reg, words, compiled)
        if words == na:
            return nan
        try:
            return dec(words)
        except CodecError as exc:
            raise DecodeError(f"{p.name} {reg.name}: {exc}") from exc
    return field


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class _KeysRead(dict):
    """The ``raw`` dict a charger's status decoder gets (memo drivers), noting the keys it reads:
    the state is a function of those values only, so a later response that changes none of them
    (an Alfen validity countdown) keeps the state without running the decoder again. Anything
    that sees the whole mapping (iteration, views, length, comparison, repr, copies, changes)
    sets ``keys_read`` to None: every key may matter, no shortcut. A dict subclass, so the
    decoder sees a dict; the reading keeps a plain copy (with whatever the decoder changed)."""

    __slots__ = ("keys_read",)

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.keys_read: set | None = set()

    def __getitem__(self, k: Any) -> Any:
        ks = self.keys_read
        if ks is not None:
            ks.add(k)
        return dict.__getitem__(self, k)

    def get(self, k: Any, default: Any = None) -> Any:
        ks = self.keys_read
        if ks is not None:
            ks.add(k)
        return dict.get(self, k, default)

    def __contains__(self, k: Any) -> bool:
        ks = self.keys_read
        if ks is not None:
            ks.add(k)
        return dict.__contains__(self, k)

    def _whole(name: str):      # noqa: N805 (a helper building methods)
        base = getattr(dict, name)

        def whole(self, *a: Any, **kw: Any) -> Any:
            self.keys_read = None
            return base(self, *a, **kw)
        whole.__name__ = name
        return whole

    for _n in ("keys", "values", "items", "__iter__", "__len__", "__eq__", "__ne__", "__repr__",
               "__str__", "__reversed__", "__or__", "__ior__", "__reduce__", "__reduce_ex__",
               "__sizeof__", "copy", "setdefault", "pop", "popitem", "update", "clear",
               "__setitem__", "__delitem__"):
        locals()[_n] = _whole(_n)
    del _n, _whole
    __hash__ = None     # type: ignore[assignment]


class _Driver:
    kind = ""

    def __init__(self, profile: Profile | str, unit: int | None, slot: int, memo: bool = False) -> None:
        p = _resolve(profile)
        # memo: the last responses and what they decoded to (decoding is a pure function of them)
        self.memo = bool(memo)
        self._memo_key: tuple | None = None
        self._memo_val: Any = None
        self._field_memo: dict[str, tuple] = {}
        self._decoders: dict[int, Any] = {}     # memo: id(register) -> compiled decoder
        self._encoders: dict[int, Any] = {}     # memo: id(register) -> compiled encoder (writes)
        self._field_decs: dict[int, Any] = {}   # memo: id(register) -> _field_decoder
        self._status_keys: set | None = None    # memo: raw keys the last full decode depends on
        self._memo_values: dict = {}            # memo (meters): the fields' values of _memo_key
        # memo (chargers): request index -> (position, field) of the one field that changed in
        # it last time; set only for fields outside _status_keys, dropped on every full decode
        self._change_hints: dict = {}
        if p.kind != self.kind:
            raise ValueError(f"{p.name} is a {p.kind}, not a {self.kind}")
        self.profile = p
        self.unit = _default_unit(p) if unit is None else int(unit)
        # a single-role product answers on whatever address the installer gave it (an RS-485
        # line needs 1, 2, 3, ...); products with unit roles (Alfen 200/1/2) only on their ids
        if len(p.units) == 1 and 1 <= self.unit <= 247:
            pass
        elif self.unit not in p.unit_ids:
            raise ValueError(f"{p.name}: unit {self.unit} not in {p.unit_ids}")
        if not 0 <= slot < p.connectors:
            raise ValueError(f"{p.name}: slot {slot} out of 0..{p.connectors - 1}")
        self.slot = slot
        self.role = p.role_of(self.unit)
        self._slot_n = slot + 1 if p.connectors > 1 else 0
        self._layout = _Layout(p, self.role, self._slot_n)
        self._fields: list[tuple[str, Register]] = []
        self._plan: list[Request] = []
        self._where: dict = {}

    def _build_plan(self) -> None:
        self._plan, self._where = self._layout.plan([r for _, r in self._fields])
        self._plan_t = tuple(self._plan)
        # per field: (name, register, response index, word offset, end), for the memo path
        self._locs = [(key, reg, *self._where[(reg.table, reg.address)]) for key, reg in self._fields]
        self._locs = [(key, reg, i, off, off + reg.count) for key, reg, i, off in self._locs]
        # per request, per word: (position in _locs, field) of the field the word belongs to, or
        # None (filler): decode_shared re-decodes only the fields whose words changed
        self._word_owner = [[None] * n for _, _, n in self._plan]
        for pos, loc in enumerate(self._locs):
            for j in range(loc[3], loc[4]):
                self._word_owner[loc[2]][j] = (pos, loc)
        # per request: (start, end, owner) of each run of words with one owner (field or filler
        # None), when no two fields share a word (else None: the word-by-word comparison)
        self._spans = None
        if sum(loc[4] - loc[3] for loc in self._locs) == sum(o is not None for w in self._word_owner for o in w):
            self._spans = []
            for owner in self._word_owner:
                runs: list = []
                for j, o in enumerate(owner):
                    if runs and runs[-1][2] is o:
                        runs[-1][1] = j + 1
                    else:
                        runs.append([j, j + 1, o])
                self._spans.append(tuple(map(tuple, runs)))

    def read_plan(self) -> list[Request]:
        return list(self._plan)

    def read_plan_view(self) -> tuple[Request, ...]:
        """:meth:`read_plan` as the driver's own tuple (the same object every call: a register
        image keys its plan memo on it)."""
        return self._plan_t

    def _field_value(self, key: str, reg: Register, words: Sequence[int]) -> Any:
        """One field's value through the per-field memo: the same words decode to the same value
        (one changing register, such as a validity countdown, no longer costs decoding the rest)."""
        last = self._field_memo.get(key)
        if last is not None and last[0] == words:
            return last[1]
        f = self._field_decs.get(id(reg))
        if f is None:
            f = self._field_decs[id(reg)] = _field_decoder(self.profile, reg, self._decoders)
        value = f(words)
        self._field_memo[key] = (words, value)
        return value

    def _values(self, responses: Sequence[Sequence[int]]) -> dict[str, Any]:
        if len(responses) != len(self._plan):
            raise DecodeError(f"{self.profile.name}: {len(responses)} responses for "
                              f"{len(self._plan)} requests")
        for (t, a, n), words in zip(self._plan, responses):
            if len(words) != n:
                raise DecodeError(f"{self.profile.name}: {t} {a}: {len(words)} words, expected {n}")
        out: dict[str, Any] = {}
        if self.memo:
            # per field: the same words decode to the same value (one changing register, such as
            # a validity countdown, no longer costs decoding every other field)
            field = self._field_value
            for key, reg, i, off, end in self._locs:
                out[key] = field(key, reg, tuple(responses[i][off:end]))
            return out
        for key, reg in self._fields:
            i, off = self._where[(reg.table, reg.address)]
            out[key] = _decode_reg(self.profile, reg, responses[i][off:off + reg.count])
        return out


# --- meters ---------------------------------------------------------------------------------------
class MeterDriver(_Driver):
    """Read a meter's phase currents, signed (export negative)."""

    kind = "meter"

    def __init__(self, profile: Profile | str, unit: int | None = None, slot: int = 0, *,
                 memo: bool = False) -> None:
        super().__init__(profile, unit, slot, memo)
        self.spec: MeterSpec = self.profile.driver or _DEFAULT_METER_SPEC
        lay = self._layout
        self.phases_present: list[bool] = []
        for i in (1, 2, 3):
            r = lay.find(f"current_l{i}_a")
            self.phases_present.append(r is not None)
            if r is not None:
                self._fields.append((f"current_l{i}_a", r))
        if not self._fields:
            raise ValueError(f"{self.profile.name}: no current registers")
        self._sign_from: list[str | None] = [None, None, None]
        if self.spec.sign == "power":
            total = lay.find("power_total_w")
            for i in (1, 2, 3):
                if not self.phases_present[i - 1]:
                    continue
                r = lay.find(f"power_l{i}_w")
                if r is not None:
                    self._fields.append((f"power_l{i}_w", r))
                    self._sign_from[i - 1] = f"power_l{i}_w"
                elif total is not None:
                    if ("power_total_w", total) not in self._fields:
                        self._fields.append(("power_total_w", total))
                    self._sign_from[i - 1] = "power_total_w"
        self._build_plan()
        if self.spec.check_voltage:       # plausibility, only when it costs no extra request
            base, n = list(self._fields), len(self._plan)
            for i in (1, 2, 3):
                r = lay.find(f"voltage_l{i}_v")
                if r is not None and self.phases_present[i - 1]:
                    self._fields.append((f"voltage_l{i}_v", r))
            self._build_plan()
            if len(self._plan) > n:
                self._fields = base
                self._build_plan()

    def decode(self, responses: Sequence[Sequence[int]]) -> list[float]:
        if self.memo:
            key = tuple(map(tuple, responses))
            old = self._memo_key
            if key == old:
                return list(self._memo_val)
            # the fields whose words did not change keep their values (a meter's voltages often
            # hold while its currents move)
            v = self._values_changed(old, key) if old is not None else None
            if v is None:
                v = self._values(responses)
            out = self._decode_values(v)
            self._memo_key, self._memo_val, self._memo_values = key, list(out), v
            return out
        return self._decode(responses)

    def _values_changed(self, old: tuple, new: tuple) -> dict | None:
        """The values of ``new`` from those of ``old`` (the memo's), decoding again only the
        fields whose words changed, in field order (the first to fail is the one ``_values``
        names); None when anything is malformed (``_values`` reports it)."""
        if len(old) != len(new) or len(new) != len(self._plan):
            return None
        changed: dict = {}
        spans = self._spans
        for i, (a, b) in enumerate(zip(old, new)):
            if a != b:
                if len(a) != len(b):
                    return None
                if spans is None:
                    owner = self._word_owner[i]
                    for j, (x, y) in enumerate(zip(a, b)):
                        if x != y:
                            o = owner[j]
                            if o is None:
                                return None
                            changed[o[0]] = o[1]
                    continue
                # field by field (a meter's values move every second: most of its words change,
                # one slice comparison per field instead of one step per word)
                for s, e, o in spans[i]:
                    if a[s:e] != b[s:e]:
                        if o is None:
                            return None     # a filler word moved
                        changed[o[0]] = o[1]
        v = dict(self._memo_values)
        for key, reg, i, off, end in (changed[pos] for pos in sorted(changed)):
            v[key] = self._field_value(key, reg, new[i][off:end])
        return v

    def _decode(self, responses: Sequence[Sequence[int]]) -> list[float]:
        return self._decode_values(self._values(responses))

    def _decode_values(self, v: dict) -> list[float]:
        s = self.spec
        name = self.profile.name
        for k, x in v.items():
            # (a float is finite when x - x is 0.0: NaN and infinities give NaN)
            if (x.__class__ is not float or x - x != 0.0) and not _finite(x):
                raise DecodeError(f"{name}: {k} = {x!r}")
        out: list[float] = []
        for i in (1, 2, 3):
            if not self.phases_present[i - 1]:
                out.append(0.0)
                continue
            cur = float(v[f"current_l{i}_a"])
            if abs(cur) > s.max_current_a:
                raise DecodeError(f"{name}: current L{i} = {cur} A implausible")
            volt = v.get(f"voltage_l{i}_v")
            if volt is not None and not 0.0 <= volt <= s.max_voltage_v:
                raise DecodeError(f"{name}: voltage L{i} = {volt} V implausible")
            pw = v.get(f"power_l{i}_w")
            if volt is not None and pw is not None and abs(pw) > 1.05 * volt * abs(cur) + 50.0:
                raise DecodeError(f"{name}: power L{i} = {pw} W inconsistent with "
                                  f"{volt} V x {cur} A")
            src = self._sign_from[i - 1]
            if src is not None and v[src] != 0:
                cur = math.copysign(abs(cur), v[src])
            out.append(cur)
        return out


# --- chargers -------------------------------------------------------------------------------------
class ChargerDriver(_Driver):
    """Read a charger's state and currents; write set-point, phases, heartbeat and failsafe."""

    kind = "charger"

    def __init__(self, profile: Profile | str, unit: int | None = None, slot: int = 0, *,
                 memo: bool = False) -> None:
        super().__init__(profile, unit, slot, memo)
        p = self.profile
        spec: ChargerSpec | None = p.driver
        if spec is None:
            raise ValueError(f"{p.name}: the profile has no driver spec (Profile.driver)")
        self.spec = spec
        lay = self._layout
        shift = spec.slot_stride * slot
        # reads: currents (required), applied current, set-point, phases, product-coded registers
        for i in (1, 2, 3):
            r = lay.find(f"current_l{i}_a")
            if r is None:
                raise ValueError(f"{p.name}: no current_l{i}_a register")
            self._fields.append((f"current_l{i}_a", r))
        for point in ("applied_current_a",) + (("setpoint_a",) if spec.read_setpoint else ()):
            r = lay.find(point)
            if r is not None:
                self._fields.append((point, r))
        self._phases_key: str | None = None
        self._phases_fn: Callable[[Any], int] | None = None
        if spec.phases is not None:
            t, a, fn = spec.phases
            r = lay.reg_at(t, a + shift)
            self._fields.append((r.name, r))
            self._phases_key, self._phases_fn = r.name, fn
        else:
            for point in ("phases_in_use", "phases_setting"):
                r = lay.find(point)
                if r is not None:
                    self._fields.append((point, r))
                    self._phases_key, self._phases_fn = point, int
                    break
        keys = {k for k, _ in self._fields}
        for t, a in spec.reads:
            r = lay.reg_at(t, a + shift)
            if r.name not in keys:
                self._fields.append((r.name, r))
                keys.add(r.name)
        self._build_plan()
        # writes
        self._sp = lay.find("setpoint_a", writable=True)
        if self._sp is None:
            raise ValueError(f"{p.name}: no writable setpoint_a register")
        self._enable = lay.find("enabled", writable=True) if spec.pause == "enable" else None
        if spec.pause == "enable" and self._enable is None:
            raise ValueError(f"{p.name}: pause='enable' but no writable 'enabled' register")
        self._phase_reg = lay.find("phases_setting", writable=True)
        self.switches_phases = self._phase_reg is not None     # phase_writes(1 or 3) is not []
        self._safe_reg = lay.find("safe_current_a", writable=True)
        self._timeout_reg = lay.find("watchdog_timeout_s", writable=True)
        self.min_current_a = float(spec.min_current_a)
        self.max_current_a = float(spec.max_current_a)
        # watchdog
        wd = p.watchdog
        self._timeout_s: float | None = None       # what failsafe_writes configured
        mode = spec.heartbeat
        self._hb_reg: Register | None = None
        if mode is None:
            mode = self._derive_heartbeat()
        elif mode == "register":
            self._hb_reg = self._heartbeat_register()
        self.heartbeat_mode = mode
        self.heartbeat_is_setpoint = mode == "setpoint"
        self.heartbeat_by_poll = mode == "poll"
        self._wd = wd

    # -- watchdog ----------------------------------------------------------------------------
    def _heartbeat_register(self) -> Register | None:
        wd = self.profile.watchdog
        if wd is None or wd.heartbeat_register is None:
            return None
        addr = wd.heartbeat_register + self.spec.slot_stride * self.slot
        try:
            return self._layout.reg_at("holding", addr)
        except KeyError:
            return None

    def _derive_heartbeat(self) -> str:
        wd = self.profile.watchdog
        if wd is None or wd.kick == "none":
            return "none"
        if wd.kick == "any":
            return "poll"
        reg = self._heartbeat_register()
        if reg is None:
            return "setpoint" if wd.kick == "write" else "none"
        if reg.address == self._sp.address:
            return "setpoint"
        if reg.target == "watchdog_timeout_s":
            return "timeout"
        self._hb_reg = reg
        return "register"

    @property
    def heartbeat_interval_s(self) -> float | None:
        """How often the controller must feed the watchdog (rewrite, or poll for "poll")."""
        if self.heartbeat_mode == "none":
            return None
        frac = self.spec.heartbeat_fraction
        if self._timeout_s:
            return self._timeout_s * frac
        wd = self._wd
        if wd is not None and wd.heartbeat_s:
            return float(wd.heartbeat_s)
        if wd is not None and wd.default_timeout_s:
            return wd.default_timeout_s * frac
        return None

    def heartbeat_writes(self) -> list[Write]:
        if self.heartbeat_mode == "register" and self._hb_reg is not None:
            return [self._write(self._hb_reg, 1)]
        if self.heartbeat_mode == "timeout" and self._timeout_s and self._timeout_reg is not None:
            return [self._write(self._timeout_reg, self._timeout_value(self._timeout_s)[0])]
        return []

    # -- writes --------------------------------------------------------------------------------
    def _write(self, reg: Register, value: Any) -> Write:
        if not check_value(reg, value):
            raise ValueError(f"{self.profile.name} {reg.name}: {value!r} not accepted")
        if self.memo:       # the register's codec, compiled once (codec.encoder: the same words)
            enc = self._encoders.get(id(reg))
            if enc is None:
                enc = self._encoders[id(reg)] = encoder(reg.dtype, reg.word_order or self.profile.word_order,
                                                        reg.scale, reg.count)
            return (reg.table, reg.address, enc(value))
        words = encode(value, reg.dtype, reg.word_order or self.profile.word_order, reg.scale,
                       reg.count)
        return (reg.table, reg.address, words)

    @staticmethod
    def _floor_to(reg: Register, amps: float) -> float:
        """Round down to the register's resolution (integers; floats are kept)."""
        if reg.dtype in ("f32", "f64"):
            return float(amps)
        inv = 1.0 / reg.scale
        r = round(inv)
        if abs(inv - r) < 1e-9 * max(1, r):
            raw = math.floor(amps * r + 1e-6)
            return raw / r
        return math.floor(amps / reg.scale + 1e-6) * reg.scale

    def _amps(self, amps: float, reg: Register) -> float:
        """0 for a pause, else the product value (floored, clamped)."""
        a = float(amps)
        if math.isnan(a) or a < 0:
            raise ValueError(f"current must be >= 0, got {amps!r}")
        if a < self.min_current_a:
            return 0.0
        a = self._floor_to(reg, min(a, self.max_current_a))
        return a if a >= self.min_current_a else 0.0

    def setpoint_writes(self, amps: float) -> list[Write]:
        """Writes that make the product offer ``amps`` (below ``min_current_a``: pause)."""
        a = self._amps(amps, self._sp)
        if self.spec.pause == "enable":
            off, on = self.spec.enable_codes
            if a == 0:
                return [self._write(self._enable, off)]
            return [self._write(self._sp, a), self._write(self._enable, on)]
        return [self._write(self._sp, a)]

    def phase_writes(self, phases: int) -> list[Write]:
        if phases not in (1, 3):
            raise ValueError(f"phases must be 1 or 3, got {phases!r}")
        if self._phase_reg is None:
            return []
        return [self._write(self._phase_reg, dict(self.spec.phase_codes)[phases])]

    def _timeout_value(self, timeout_s: float) -> tuple[Any, float]:
        """(product value to write, effective timeout in s) for the timeout register."""
        reg = self._timeout_reg
        t = float(timeout_s)
        if math.isnan(t) or t < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout_s!r}")
        wd = self.profile.watchdog
        if t == 0:
            if wd is not None and wd.disabled_value is not None:
                return wd.disabled_value, 0.0
            return 0, 0.0
        if reg.dtype in ("f32", "f64"):
            return t, t
        res = reg.scale
        raw = max(1, math.floor(t / res + 1e-6))                 # shorter is the safe side
        raw = min(raw, _INT_MAX[reg.dtype])
        if wd is not None and wd.disabled_value is not None and raw >= wd.disabled_value:
            raw = wd.disabled_value - 1
        inv = round(1 / res)
        if res < 1 and abs(1 / res - inv) < 1e-9 * inv:
            value: Any = raw / inv
        else:
            value = raw * res if res != 1 else raw
        return value, float(value)

    def failsafe_writes(self, safe_a: float, timeout_s: float) -> list[Write]:
        """Configure the product's own failsafe: safe current, then communication timeout."""
        out: list[Write] = []
        if self._safe_reg is not None:
            out.append(self._write(self._safe_reg, self._amps(safe_a, self._safe_reg)))
        if self._timeout_reg is not None:
            value, eff = self._timeout_value(timeout_s)
            out.append(self._write(self._timeout_reg, value))
            self._timeout_s = eff or None
        return out

    # -- reads -----------------------------------------------------------------------------------
    def decode(self, responses: Sequence[Sequence[int]]) -> ChargerReading:
        if self.memo:
            # compared as lists of lists (one C-level comparison, no tuples built per cycle)
            key = self._memo_key
            if key is None or key != responses:
                r = self._decode(responses)
                self._memo_key, self._memo_val = [list(x) for x in responses], r
            else:
                r = self._memo_val
            raw = dict(r.raw)
            raw["currents_a"] = cur = list(r.currents_a)
            return ChargerReading(state=r.state, currents_a=cur, applied_a=r.applied_a,
                                  setpoint_a=r.setpoint_a, phases=r.phases, raw=raw)
        return self._decode(responses)

    def decode_shared(self, responses: list) -> ChargerReading:
        """:meth:`decode` for a caller that only reads the result and drops ``responses`` (the
        site controller's scan): with ``memo`` the remembered reading itself, and ``responses``
        kept as the memo's key, without the copies :meth:`decode` makes. Never mutate either.
        The same reading object comes back while its state, currents, applied current,
        set-point and phases hold; only its ``raw`` may be updated in place meanwhile (a caller
        that keeps ``raw`` across calls copies it)."""
        if not self.memo:
            return self._decode(responses)
        key = self._memo_key
        if key is not responses and (key is None or key != responses):
            r = self._decode_changed(key, responses) if key is not None else None
            if r is None:
                r = self._decode(responses)
            self._memo_key, self._memo_val = responses, r
            return r
        return self._memo_val

    def _decode_changed(self, old: list, responses: list) -> ChargerReading | None:
        """The reading for ``responses`` from the memo's (decoded from ``old``) when the words
        that changed belong only to fields that neither the currents, the applied current, the
        set-point, the phases nor the status decoder (keys it read last time) depend on: those
        fields are decoded again into the memo's ``raw`` in place and the memo's reading itself
        is the answer (an Alfen's validity countdown then costs one field, and the controller
        sees the same reading object while nothing it uses changed). None: decode in full (also
        for anything malformed, which the full path reports)."""
        prev = self._memo_val
        keep = self._status_keys
        if keep is None or len(old) != len(responses) or len(responses) != len(self._plan):
            return None
        changed: dict = {}
        hints = self._change_hints
        for i, (a, b) in enumerate(zip(old, responses)):
            if a != b:
                if len(a) != len(b):
                    return None
                h = hints.get(i)
                if h is not None:
                    # the field that changed last time (a countdown): if the words around it
                    # are the same, it is the only change (two C-level comparisons)
                    pos, loc = h
                    off, end = loc[3], loc[4]
                    if a[:off] == b[:off] and a[end:] == b[end:]:
                        changed[pos] = loc      # (not a key of ``keep``: see below)
                        continue
                owner = self._word_owner[i]
                mine: dict = {}
                for j, (x, y) in enumerate(zip(a, b)):
                    if x != y:
                        o = owner[j]
                        if o is None:
                            return None     # a filler word moved: not this product's answer
                        if o[1][0] in keep:
                            return None
                        mine[o[0]] = o[1]
                changed.update(mine)
                if len(mine) == 1:
                    hints[i] = next(iter(mine.items()))
        # in field order: the first field that fails to decode is the one the full path names;
        # all of them decoded before the memo's reading changes (a failure leaves it as it was)
        field = self._field_value
        if len(changed) == 1:       # (the countdown alone: every second on every Alfen)
            for key, reg, i, off, end in changed.values():
                prev.raw[key] = field(key, reg, tuple(responses[i][off:end]))
            return prev
        prev.raw.update([(key, field(key, reg, tuple(responses[i][off:end])))
                         for key, reg, i, off, end in (changed[pos] for pos in sorted(changed))])
        return prev

    def _decode(self, responses: Sequence[Sequence[int]]) -> ChargerReading:
        raw = self._values(responses)
        name = self.profile.name
        cur = []
        for i in (1, 2, 3):
            x = raw[f"current_l{i}_a"]
            if not _finite(x) or abs(x) > _MAX_CHARGER_CURRENT_A:
                raise DecodeError(f"{name}: current L{i} = {x!r}")
            cur.append(float(x))
        raw["currents_a"] = cur

        def opt(key: str) -> float | None:
            x = raw.get(key)
            return float(x) if _finite(x) and abs(x) <= _MAX_CHARGER_CURRENT_A else None

        phases = None
        if self._phases_key is not None:
            try:
                phases = self._phases_fn(raw[self._phases_key])
            except (KeyError, TypeError, ValueError):
                phases = None
            if phases not in (1, 3):
                phases = None
        self._status_keys = None
        self._change_hints = {}     # (only fields outside the new _status_keys may be hinted)
        if self.memo:
            raw = _KeysRead(raw)
        try:
            state = self.spec.status(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"{name}: cannot decode the state from {raw!r}: {exc}") from exc
        if state not in STATES:
            raise DecodeError(f"{name}: decoder returned {state!r}")
        if raw.__class__ is _KeysRead:
            ks = raw.keys_read
            raw = dict.copy(raw)
            if ks is not None:
                # what decode_shared must not see change to keep this reading's state
                ks.update(("currents_a", "applied_current_a", "setpoint_a"))
                for k, _ in self._fields:
                    if k.startswith("current_l"):
                        ks.add(k)
                if self._phases_key is not None:
                    ks.add(self._phases_key)
                self._status_keys = ks
        return ChargerReading(state=state, currents_a=cur, applied_a=opt("applied_current_a"),
                              setpoint_a=opt("setpoint_a"), phases=phases, raw=raw)


def driver_for(profile_or_name: Profile | str, unit: int | None = None,
               slot: int = 0, *, memo: bool = False) -> MeterDriver | ChargerDriver:
    """The driver for a profile (by its ``kind``); ``unit`` None -> its default device unit.

    ``memo=True`` remembers the last responses and their decoding (same results, faster when a
    device's registers do not change between cycles)."""
    p = _resolve(profile_or_name)
    if p.kind == "meter":
        return MeterDriver(p, unit, slot, memo=memo)
    return ChargerDriver(p, unit, slot, memo=memo)
