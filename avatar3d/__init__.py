"""avatar3d: a phone video of a head to a drivable, relightable 3D avatar, exported to game engines."""

__version__ = "0.1.0"
