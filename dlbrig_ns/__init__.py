"""dlbrig: a deterministic allocator core for EV-charger load balancing and the rig that certifies it.

Sub-packages: ``dlbrig.core`` (the C core and its executable specification), ``dlbrig.firmware_sim``
(device models and real products' register maps) and ``dlbrig.rig`` (Modbus/VISA, controller,
scenarios, certification).
"""
__version__ = "0.1.0"
