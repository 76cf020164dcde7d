"""Capacity planning: how many chargers a connection carries with load balancing (``dlbrig plan``).

:mod:`.demand` (drivers per property type), :mod:`.site` (the planning site), :mod:`.sim` (the
60-second simulator around the core), :mod:`.sweep` (charger counts on the Dask engine), :mod:`.report`."""
from .demand import PROFILES, DemandProfile, draw_drivers, profile_from_dict
from .site import PlanError, PlanSite, load_site, site_from_dict
from .sim import simulate
from .sweep import parse_counts, recommend, run_plan

__all__ = ["PROFILES", "DemandProfile", "draw_drivers", "profile_from_dict", "PlanError", "PlanSite",
           "load_site", "site_from_dict", "simulate", "parse_counts", "recommend", "run_plan"]
