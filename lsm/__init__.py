"""lsm: an embeddable, crash-safe LSM-tree key-value store (placeholder; filled in as modules land)."""
__version__ = "0.1.0.dev0"
