"""Where certherd keeps its state: a key-value store and a locker with leases (one
Storage; filesystem by default), with lineages laid out above them."""

from certherd.storage.base import KeyValueStore, Lease, Locker, Stat, Storage
from certherd.storage.filesystem import FilesystemStorage
from certherd.storage.leases import holding
from certherd.storage.memory import MemoryStorage

__all__ = [
    "FilesystemStorage",
    "KeyValueStore",
    "Lease",
    "Locker",
    "MemoryStorage",
    "Stat",
    "Storage",
    "holding",
]
