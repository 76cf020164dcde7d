"""Energy management around the allocator: time-of-use tariffs, contracted capacity, capacity
tariffs (monthly 15-minute peak), an on-site battery, and a price-aware policy, as a layer the site
controller calls before ``Allocator.step`` (the core is not changed). See :mod:`.policy`."""
from .config import (BatterySpec, CapacityTariff, Contract, EnergySpec, PriceAware, Tariff, contract_kw_at,
                     parse_days, price_at)
from .ledger import Ledger, PeakTracker
from .policy import EnergyManager, may_defer, min_price_ahead

__all__ = ["EnergySpec", "Tariff", "Contract", "CapacityTariff", "BatterySpec", "PriceAware", "price_at",
           "contract_kw_at", "parse_days", "Ledger", "PeakTracker", "EnergyManager", "may_defer",
           "min_price_ahead"]
