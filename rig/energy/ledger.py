"""Peak tracking (15-minute average demand per billing month) and the cost ledger of a run."""
from __future__ import annotations

from .config import MONTH_MS, contract_kw_at, price_at


class PeakTracker:
    """Average import per fixed window (aligned to the models' clock, e.g. quarter hours) and the
    highest window average of each billing month (30-day blocks from ``start_abs_ms``)."""

    def __init__(self, window_ms: int = 900_000, start_abs_ms: int = 0, month_ms: int = MONTH_MS):
        self.window_ms, self.start_abs_ms, self.month_ms = int(window_ms), int(start_abs_ms), int(month_ms)
        self.window = None          # index of the open window
        self.window_kwh = 0.0       # energy imported in the open window so far
        self.month_peaks: dict[int, float] = {}

    def month_of(self, t_abs_ms: int) -> int:
        return max(0, (t_abs_ms - self.start_abs_ms) // self.month_ms)

    def add(self, t_abs_ms: int, kw: float, dt_ms: int) -> None:
        """``kw`` held from ``t_abs_ms`` for ``dt_ms`` (split at window boundaries)."""
        t, end = int(t_abs_ms), int(t_abs_ms) + int(dt_ms)
        while t < end:
            w = t // self.window_ms
            if w != self.window:
                self._close()
                self.window, self.window_kwh = w, 0.0
            upto = min(end, (w + 1) * self.window_ms)
            self.window_kwh += kw * (upto - t) / 3_600_000
            t = upto

    def _close(self) -> None:
        if self.window is None:
            return
        avg = self.window_kwh * 3_600_000 / self.window_ms
        m = self.month_of(self.window * self.window_ms)
        self.month_peaks[m] = max(self.month_peaks.get(m, 0.0), avg)

    def finish(self) -> None:
        self._close()
        self.window = None

    def month_peak(self, t_abs_ms: int) -> float:
        """The highest closed window average of the month of ``t_abs_ms`` so far (0 at its start)."""
        return self.month_peaks.get(self.month_of(t_abs_ms), 0.0)

    def allowed_kw(self, t_abs_ms: int, target_kw: float) -> float:
        """Import allowed for the rest of the open window so that its average stays <= target."""
        w = t_abs_ms // self.window_ms
        used = self.window_kwh if w == self.window else 0.0
        remaining_h = ((w + 1) * self.window_ms - t_abs_ms) / 3_600_000
        budget = target_kw * self.window_ms / 3_600_000 - used
        return max(0.0, budget / remaining_h) if remaining_h > 0 else target_kw


class Ledger:
    """What a run costs and how close it came to its contract, from the true site import."""

    def __init__(self, spec, start_abs_ms: int = 0):
        self.spec = spec
        ct = spec.capacity_tariff if spec is not None else None
        self.peaks = PeakTracker(ct.window_ms if ct else 900_000, start_abs_ms)
        self.import_kwh = self.export_kwh = 0.0
        self.energy_cost = 0.0
        self.ev_kwh = 0.0
        self.ev_energy_cost = 0.0           # the EVs' energy at the price of its time
        self.peak_kw = 0.0
        self.over_contract_s = 0.0
        self.over_contract_kwh = 0.0
        self.max_over_contract_kw = 0.0
        self.over_contract_ev_s = 0.0       # exceedance while EVs drew current (the controller's)

    def add(self, t_abs_ms: int, import_kw: float, dt_ms: int, ev_kw: float = 0.0) -> None:
        h = dt_ms / 3_600_000
        tariff = self.spec.tariff if self.spec is not None else None
        self.ev_kwh += ev_kw * h
        if tariff is not None:
            self.ev_energy_cost += ev_kw * h * price_at(tariff, t_abs_ms)
        if import_kw >= 0:
            self.import_kwh += import_kw * h
            if tariff is not None:
                self.energy_cost += import_kw * h * price_at(tariff, t_abs_ms)
        else:
            self.export_kwh += -import_kw * h
            if tariff is not None:
                self.energy_cost -= -import_kw * h * tariff.export
        self.peak_kw = max(self.peak_kw, import_kw)
        self.peaks.add(t_abs_ms, import_kw, dt_ms)
        contract = self.spec.contract if self.spec is not None else None
        if contract is not None:
            over = import_kw - contract_kw_at(contract, t_abs_ms)
            if over > 1e-6:
                self.over_contract_s += dt_ms / 1000
                self.over_contract_kwh += over * h
                self.max_over_contract_kw = max(self.max_over_contract_kw, over)
                if ev_kw > 1e-6:
                    self.over_contract_ev_s += dt_ms / 1000

    def summary(self) -> dict:
        self.peaks.finish()
        ct = self.spec.capacity_tariff if self.spec is not None else None
        months = dict(sorted(self.peaks.month_peaks.items()))
        capacity_cost = sum(max(p, ct.floor_kw) * ct.eur_per_kw_month for p in months.values()) if ct else 0.0
        return {"import_kwh": round(self.import_kwh, 3), "export_kwh": round(self.export_kwh, 3),
                "energy_cost_eur": round(self.energy_cost, 2),
                "ev_energy_kwh": round(self.ev_kwh, 3), "ev_energy_cost_eur": round(self.ev_energy_cost, 2),
                "ev_price_eur_per_kwh": round(self.ev_energy_cost / self.ev_kwh, 4) if self.ev_kwh > 0 else None, "capacity_cost_eur": round(capacity_cost, 2),
                "total_cost_eur": round(self.energy_cost + capacity_cost, 2),
                "peak_kw": round(self.peak_kw, 3),
                "peak_15min_kw": round(max(months.values(), default=0.0), 3),
                "monthly_peaks_kw": [round(v, 3) for v in months.values()],
                "contract_exceedance_s": round(self.over_contract_s, 1),
                "contract_exceedance_kwh": round(self.over_contract_kwh, 4),
                "contract_max_over_kw": round(self.max_over_contract_kw, 3),
                "contract_exceedance_with_ev_s": round(self.over_contract_ev_s, 1)}
