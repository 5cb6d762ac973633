"""Record types, Arrow schemas, configuration and output manifests."""

from vlcurate.schemas.record import Pair, stable_hash

__all__ = ["Pair", "stable_hash"]
