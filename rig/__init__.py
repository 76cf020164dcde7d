"""dlbrig.rig: everything that touches the outside world or orchestrates: Modbus, VISA, clock, controller, scenarios, certification, CLI."""
