"""certherd: an ACME (RFC 8555) client library, CLI and daemon."""

__version__ = "0.1.0"

__all__ = ["__version__"]
