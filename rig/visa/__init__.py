"""Lab instruments over VISA: emulated SCPI servers, pyvisa drivers, the bench coupling.

* :mod:`.scpi` / :mod:`.commands`: SCPI parsing and the command sets of each instrument family;
* :mod:`.server`: emulated instruments as SCPI-over-TCP servers (:class:`InstrumentEmulator`);
* :mod:`.drivers`: pyvisa (pyvisa-py) drivers addressing ``TCPIP0::host::port::SOCKET`` resources;
* :mod:`.bench`: instruments bound to a scenario's chargers and circuits (serving, reading, safety).
"""
from .server import InstrumentEmulator, ScpiServer, visa_resource

__all__ = ["InstrumentEmulator", "ScpiServer", "visa_resource"]
