"""The local simulator: synchronous decentralized learning of many nodes in one process."""

from p2pfl.sim.engine import RoundMetrics, SimResult, Simulation, simulate

__all__ = ["RoundMetrics", "SimResult", "Simulation", "simulate"]
