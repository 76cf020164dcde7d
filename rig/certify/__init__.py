"""dlbrig.rig.certify: the certification catalog, its runner and the DUT adapters."""
