"""dlbrig.rig.modbus: emulated devices as real Modbus servers, and the rig's Modbus master.

* :mod:`.server`: :class:`ModbusTcpServer`, :class:`ModbusRtuServer` (RTU over TCP or a pty),
  :class:`ModbusEmulator` (a set of servers, endpoint records), frame tap and fault hooks;
  our own asyncio implementation over :mod:`.frames` (see the server docstring for why).
* :mod:`.client`: :class:`ModbusMaster` (timeouts, retries, reconnects, failure records) and
  :class:`DeviceClient` (points of a profile).
* :mod:`._pymodbus`: the only module importing pymodbus (pinned version, checked at import).
"""
from .client import (DeviceClient, Failure, ModbusConnectionError, ModbusExceptionResponse,
                     ModbusMaster, ModbusMasterError, ModbusProtocolError, ModbusTimeout,
                     ReadPlan)
from .server import (BackgroundEmulator, FaultAction, FaultHook, FaultRule, FaultRules, Frame,
                     FrameRecorder, ModbusEmulator, ModbusRtuServer, ModbusTcpServer,
                     ServedDevice, check_bind_host, wall_clock_ms)

__all__ = [
    "ModbusMaster", "DeviceClient", "Failure", "ReadPlan", "ModbusExceptionResponse",
    "ModbusMasterError", "ModbusTimeout", "ModbusConnectionError", "ModbusProtocolError",
    "ModbusTcpServer", "ModbusRtuServer", "ModbusEmulator", "BackgroundEmulator", "ServedDevice",
    "Frame", "FrameRecorder", "FaultAction", "FaultHook", "FaultRule", "FaultRules",
    "check_bind_host", "wall_clock_ms",
]
