"""FluxForge: a market-data appliance for mid-frequency crypto research and trading."""

__version__ = "0.1.0"
