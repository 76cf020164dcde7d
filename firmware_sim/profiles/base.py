"""Data types of a profile: :class:`Register`, :class:`Watchdog`, :class:`Profile`.

A profile is *data*: a product's register table plus the quirks of its Modbus server. The one
engine that serves any profile is :class:`dlbrig.firmware_sim.profiles.image.DeviceImage`.

Where a register's value comes from (first that is set wins):

* ``fn(points)``        a callable over one device's ``points()`` mapping (product encodings such
                        as KEBA's charging-state code are small converters from generic points);
* ``group_fn(list)``    a callable over the points of every device behind the unit (CHARX group
                        registers, Alfen station registers);
* ``clock_fn(now_ms)``  a callable over the request time (date/time, uptime registers);
* ``point``             one point of the vocabulary (``points()[point]``), scaled by ``scale``;
* ``const``             a constant (also the initial value of a *local* register, see below).

Writes: the words are decoded with the register's dtype / word order / scale, checked with
``valid`` (product units, after scale), converted with ``write_fn`` (product value -> vocabulary
value) and passed to ``device.write_point(write_point or point, value, now_ms)``. A writable
register with neither ``write_point`` nor ``point`` is *local*: the image keeps the value (e.g.
Eastron's password, a parity setting the model does not care about) and reads return it. A
writable register whose ``point`` the model does not expose in ``points()`` reads back the last
value written (or ``const``), so configuration registers work with minimal models.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from .codec import BE, CodecError, encode, normalize_word_order, size_of

__all__ = ["Register", "Watchdog", "Profile", "TABLES", "READ_FC", "WRITE_FC"]

TABLES = ("coil", "discrete", "input", "holding")
READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
WRITE_FC = {5: "coil", 15: "coil", 6: "holding", 16: "holding"}


@dataclass(frozen=True)
class Register:
    """One value in a product's register map."""

    address: int
    dtype: str
    point: str | None = None
    table: str = "holding"
    const: Any = None
    fn: Callable[[Mapping[str, Any]], Any] | None = None
    group_fn: Callable[[Sequence[Mapping[str, Any]]], Any] | None = None
    clock_fn: Callable[[int], Any] | None = None
    scale: float = 1.0
    unit: str = ""
    access: str = "r"
    description: str = ""
    count: int | None = None
    name: str = ""
    word_order: str | None = None
    write_point: str | None = None
    write_fn: Callable[[Any], Any] | None = None
    valid: tuple[float, float] | Callable[[Any], bool] | None = None
    slot: int = 0
    role: str | None = None
    heartbeat: bool = False

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ValueError(f"{self.address}: unknown table {self.table!r}")
        if self.access not in ("r", "w", "rw"):
            raise ValueError(f"{self.address}: access must be r, w or rw")
        n = size_of(self.dtype, self.count)
        if self.count is None:
            object.__setattr__(self, "count", n)
        elif self.count != n:
            raise ValueError(f"{self.address}: count {self.count} != size of {self.dtype}")
        if self.table in ("coil", "discrete") and self.dtype != "bool":
            raise ValueError(f"{self.address}: bit tables hold dtype 'bool'")
        if self.table in ("input", "discrete") and "w" in self.access:
            raise ValueError(f"{self.address}: {self.table} is read-only by Modbus")
        if self.address < 0 or self.address + n > 0x10000:
            raise ValueError(f"address {self.address} out of the 16-bit space")
        if self.word_order is not None:
            object.__setattr__(self, "word_order", normalize_word_order(self.word_order))
        if not self.name:
            object.__setattr__(self, "name", self.point or self.write_point or
                               f"{self.table}_{self.address}")

    @property
    def end(self) -> int:
        return self.address + self.count

    @property
    def readable(self) -> bool:
        return "r" in self.access

    @property
    def writable(self) -> bool:
        return "w" in self.access

    @property
    def target(self) -> str | None:
        """The vocabulary point a write goes to (None = local register)."""
        return self.write_point or self.point

    def at(self, address: int, slot: int | None = None, **kw: Any) -> "Register":
        return replace(self, address=address, slot=self.slot if slot is None else slot, **kw)


@dataclass(frozen=True)
class Watchdog:
    """How the product falls back when its controller goes quiet.

    ``timeout_register`` / ``safe_current_register`` are addresses (holding) in this profile;
    ``kick`` is what resets the timer: ``"any"`` (any request to the unit, Heidelberg),
    ``"write"`` (any write, KEBA), ``"register"`` (writes of registers flagged ``heartbeat``:
    Alfen 1210, Vestel 6000), ``"none"``. ``heartbeat_s`` is the rewrite interval a well-behaved
    controller uses (from devices.md / evcc); ``default_timeout_s`` the factory timeout.
    """

    timeout_register: int | None = None
    timeout_unit: str = "s"
    timeout_write_register: int | None = None
    safe_current_register: int | None = None
    safe_current_write_register: int | None = None
    remaining_register: int | None = None
    heartbeat_register: int | None = None
    kick: str = "none"
    default_timeout_s: float | None = None
    heartbeat_s: float | None = None
    disabled_value: int | None = None
    notes: str = ""


@dataclass(frozen=True)
class Profile:
    """A product's Modbus server: identity, transport defaults, quirks and registers."""

    name: str
    vendor: str
    model: str
    kind: str                                   # "meter" | "charger"
    transport: str                              # "tcp" | "rtu"
    registers: tuple[Register, ...]
    source: str = ""
    notes: str = ""
    port: int = 502
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    units: tuple[tuple[int, str], ...] = ((1, "device"),)
    default_role: str = "device"
    station_unit: int | None = None             # unit answered from all other units' devices
    word_order: str = BE
    function_codes: frozenset[int] = frozenset({3, 4, 6, 16})
    max_read: int = 125                         # registers per FC03/04 request
    max_read_bits: int = 2000                   # bits per FC01/02 request
    max_write: int = 123                        # registers per FC16 request
    limit_exception: int = 3                    # code when a request is too large
    reserved: str = "exception"                 # "nan" | "zero" | "exception"
    blocks: tuple[tuple[str, int, int], ...] | None = None  # (table, start, end) answering ranges
    mirror_input: bool = False                  # FC04 answers the holding map (CHARX)
    partial_reads: str = "allow"                # reads starting/ending mid-value: "allow"|"exception"
    single_value_reads: bool = False            # KEBA: a read must not span value boundaries
    boundary_exception: int = 2
    atomic_writes: bool = False                 # multi-register values must be written whole
    partial_write_exception: int = 3
    one_value_per_write: bool = False           # Eastron: "write to only one parameter per message"
    readonly_exception: int = 2
    invalid_value_exception: int = 3
    watchdog: Watchdog | None = None
    max_clients: int | None = None
    keepalive_s: float | None = None
    connectors: int = 1                         # slots per unit (CHARX: up to 12)
    # controller side (profiles/driver.py): a ChargerSpec / MeterSpec, None = derived defaults
    driver: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("meter", "charger"):
            raise ValueError("kind must be meter or charger")
        if self.transport not in ("tcp", "rtu"):
            raise ValueError("transport must be tcp or rtu")
        if self.reserved not in ("nan", "zero", "exception"):
            raise ValueError("reserved must be nan, zero or exception")
        object.__setattr__(self, "word_order", normalize_word_order(self.word_order))
        object.__setattr__(self, "function_codes", frozenset(self.function_codes))
        self._check_overlaps()

    def _check_overlaps(self) -> None:
        seen: dict[tuple, Register] = {}
        for r in self.registers:
            for a in range(r.address, r.end):
                key = (r.role, r.table, a)
                other = seen.get(key)
                if other is not None:
                    raise ValueError(f"{self.name}: {r.table} {a} in both {other.name!r} "
                                     f"and {r.name!r}")
                seen[key] = r

    # --- look-ups (master side and docs) -------------------------------------------------
    def role_of(self, unit: int) -> str:
        return dict(self.units).get(unit, self.default_role)

    @property
    def unit_ids(self) -> tuple[int, ...]:
        return tuple(u for u, _ in self.units)

    def word_order_of(self, reg: Register) -> str:
        return reg.word_order or self.word_order

    def register(self, address: int, table: str = "holding", role: str | None = None) -> Register:
        """The register starting at ``address`` (first match for ``role`` or any role)."""
        for r in self.registers:
            if r.address == address and r.table == table and (role is None or r.role in (None, role)):
                return r
        raise KeyError(f"{self.name}: no {table} register at {address}")

    def find(self, point: str, writable: bool | None = None, slot: int | None = None,
             role: str | None = None) -> Register:
        """First register bound to ``point`` (as read point or write target)."""
        for r in self.registers:
            if r.point != point and r.write_point != point:
                continue
            if writable is True and not (r.writable and r.target == point):
                continue
            if writable is False and not r.readable:
                continue
            if slot is not None and r.slot != slot:
                continue
            if role is not None and r.role not in (None, role):
                continue
            return r
        raise KeyError(f"{self.name}: no register for point {point!r}")

    def write_request(self, point: str, value: Any, slot: int | None = None,
                      role: str | None = None) -> tuple[str, int, list[int]]:
        """(table, address, words) a controller sends to set ``point`` (vocabulary units)."""
        r = self.find(point, writable=True, slot=slot, role=role)
        return r.table, r.address, encode(value, r.dtype, self.word_order_of(r), r.scale, r.count)

    def describe(self) -> str:
        """A markdown table of the map (for docs and reports)."""
        rows = ["| unit role | table | addr | regs | type | scale | unit | access | point | description |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(self.registers, key=lambda r: (r.role or "", r.table, r.address)):
            src = r.point or ("fn" if r.fn or r.group_fn else ("local" if r.const is not None else ""))
            rows.append(f"| {r.role or '*'} | {r.table} | {r.address} | {r.count} | {r.dtype} | "
                        f"{r.scale:g} | {r.unit} | {r.access} | {src} | {r.description} |")
        return "\n".join(rows)


def check_value(reg: Register, value: Any) -> bool:
    """True if ``value`` (product units) passes the register's ``valid`` rule."""
    v = reg.valid
    if v is None:
        return True
    if callable(v):
        return bool(v(value))
    lo, hi = v
    try:
        return lo <= value <= hi
    except TypeError:
        return False


# re-exported for profile modules
__all__ += ["check_value", "CodecError", "field"]
