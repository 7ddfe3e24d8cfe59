"""p2pfl: peer-to-peer decentralized learning with Byzantine-robust aggregation."""

__version__ = "0.1.0"

__all__ = ["__version__"]
