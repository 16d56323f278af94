"""Certificate flows built on the protocol layer: obtain (and later renew, revoke)."""

from certherd.manager.obtain import IssuedCertificate, obtain_certificate, select_chain

__all__ = ["IssuedCertificate", "obtain_certificate", "select_chain"]
