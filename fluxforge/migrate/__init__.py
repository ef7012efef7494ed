"""Moving in from other systems: their config and their recorded data become FluxForge's."""
