"""Campaigns: a matrix of runs (scenarios x seeds x fault variants x DUT settings) on Dask distributed,
resumable, aggregated into one report. Entry point: :func:`run_campaign` (CLI: ``dlbrig campaign``)."""
from .engine import EngineError, execute, run_all
from .runner import CampaignResult, run_campaign
from .spec import Campaign, CampaignError, RunSpec, campaign_from_dict, load_campaign

__all__ = ["run_campaign", "CampaignResult", "load_campaign", "campaign_from_dict", "Campaign",
           "CampaignError", "RunSpec", "execute", "run_all", "EngineError"]
