"""dlbrig.core: the allocator core's Python face.

``Site.from_dict(spec)`` validates a site; ``Allocator(site)`` runs the C core (``backend="c"``) or the
executable specification (``backend="reference"``). See README.md for an example.
"""
from .allocator import Allocator, ChargerResult, CircuitResult, Result
from .site import Site, SiteError

__all__ = ["Allocator", "ChargerResult", "CircuitResult", "Result", "Site", "SiteError"]
