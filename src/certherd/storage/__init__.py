"""Where certherd keeps its state: a key-value Storage with locks (filesystem by default)."""

from certherd.storage.base import Storage
from certherd.storage.filesystem import FilesystemStorage
from certherd.storage.memory import MemoryStorage

__all__ = ["FilesystemStorage", "MemoryStorage", "Storage"]
