"""The CAs of one certificate in certherd.toml: one, or an ordered list to fail over along.

``ca = "letsencrypt"`` and ``server = "URL"`` name one CA, as before. ``ca`` may also be
a list, tried in order (:mod:`certherd.manager.failover`): each entry a preset name, a
directory URL, or a table of its own with the account details that belong to that CA
(its EAB above all: a key id and HMAC key are given by one CA for one CA)::

    ca = ["letsencrypt", { ca = "zerossl", eab_kid = "kid", eab_hmac_key_file = "/k" }]

    [[certificate.ca]]            # the same, as TOML's array of tables
    server = "https://acme.example/directory"
    ca_bundle = "/etc/certherd/example-root.pem"

An entry's ``account``, ``ca_bundle``, ``email`` and ``agree_tos`` default to the
certificate's own keys, then to ``[defaults]``. A flat ``eab_*`` belongs to the one CA
of its table: with a list of several CAs the certificate's own flat EAB is refused (say
which CA it belongs to), and ``[defaults]``' flat EAB goes to the list's entries at the
CA ``[defaults]`` names on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from certherd.settings import CaSettings, EabSettings

if TYPE_CHECKING:
    from certherd.config import CertificateTable, DefaultsTable, _Loader

__all__ = ["CaList", "CaTable", "ca_list"]

SecretText = str | dict[str, str]


class CaTable(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One CA of a list given as a table: ``ca`` (a preset) or ``server`` (a directory
    URL), and the account there; what it leaves out comes from the certificate, then
    from ``[defaults]`` (not the EAB: that is the CA's own)."""

    ca: str | None = None
    server: str | None = None
    ca_bundle: str | None = None
    email: str | None = None
    agree_tos: bool | None = None
    account: str | None = None
    eab_kid: str | None = None
    eab_hmac_key_file: str | None = None
    eab_hmac_key: SecretText | None = None


CaList = str | list[str | CaTable]
"""``ca``: one preset name, or a list of CAs (names, directory URLs or tables), in order."""

Path = tuple[str | int, ...]


def _directory(loader: _Loader, value: str, at: Path, *, url: bool) -> str:
    """The directory URL of a preset name (or, ``url``, of a URL given as it is)."""
    from certherd.config import CA_PRESETS

    if url:
        if not value.startswith(("https://", "http://")):
            raise loader.fail(
                'server must be a directory URL, like "https://acme.example/directory"', at
            )
        return value
    preset = CA_PRESETS.get(value.lower())
    if preset is None:
        raise loader.fail(
            f"unknown CA {value!r}: use one of {', '.join(CA_PRESETS)}, "
            'a directory URL like "https://acme.example/directory", '
            'or server = "URL" for another CA',
            at,
        )
    return preset.directory_url


def _entries(
    loader: _Loader, values: CertificateTable | DefaultsTable, at: Path
) -> list[tuple[str, CaTable | None, Path]]:
    """(directory URL, its own table or None, where it is written) for each CA named by
    ``values`` (its ``server`` or its ``ca``), in order."""
    from certherd.config import DEFAULT_CA

    if values.server is not None and values.ca is not None:
        raise loader.fail(
            'give either server = "URL" or ca = "NAME", not both: remove one', (*at, "server")
        )
    if values.server is not None:
        if not values.server:
            raise loader.fail(
                'server must be a directory URL, like "https://acme.example/directory"',
                (*at, "server"),
            )
        return [(values.server, None, (*at, "server"))]
    ca = values.ca if values.ca is not None else DEFAULT_CA
    if isinstance(ca, str):
        return [(_directory(loader, ca, (*at, "ca"), url="://" in ca), None, (*at, "ca"))]
    if not ca:
        raise loader.fail('ca is empty: name at least one CA, like ca = ["letsencrypt"]', at)
    entries: list[tuple[str, CaTable | None, Path]] = []
    for index, item in enumerate(ca):
        item_at = (*at, "ca", index)
        if isinstance(item, str):
            entries.append((_directory(loader, item, item_at, url="://" in item), None, item_at))
            continue
        if (item.ca is None) == (item.server is None):
            raise loader.fail(
                f'{".".join(map(str, item_at))}: give ca = "NAME" or server = "URL" '
                "(exactly one) in each CA table",
                item_at,
            )
        if item.server is not None:
            directory = _directory(loader, item.server, (*item_at, "server"), url=True)
        else:
            directory = _directory(loader, str(item.ca), (*item_at, "ca"), url=False)
        entries.append((directory, item, item_at))
    return entries


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def ca_list(loader: _Loader, entry: CertificateTable, block: int) -> tuple[CaSettings, ...]:
    """The certificate's CAs in order, each with its account details: the certificate's
    own ``ca``/``server`` win over ``[defaults]``'."""
    defaults = loader.defaults
    at: Path = ("certificate", block)
    own = entry.server is not None or entry.ca is not None
    if own:
        _entries(loader, defaults, ("defaults",))  # checked even when not used
    entries = _entries(loader, entry if own else defaults, at if own else ("defaults",))
    flat_eab_own = (entry.eab_kid, entry.eab_hmac_key_file, entry.eab_hmac_key) != (None,) * 3
    if len(entries) > 1 and flat_eab_own:
        key = "eab_kid" if entry.eab_kid is not None else "eab_hmac_key_file"
        raise loader.fail(
            "with several CAs, External Account Binding belongs to one of them: move "
            'eab_kid and its key into that CA\'s table, like ca = ["letsencrypt", '
            '{ ca = "zerossl", eab_kid = "...", eab_hmac_key_file = "/path" }]',
            (*at, key),
        )
    default_entries = _entries(loader, defaults, ("defaults",))
    default_ca = default_entries[0][0] if len(default_entries) == 1 else None
    seen: set[tuple[str, str]] = set()
    cas: list[CaSettings] = []
    for url, table, item_at in entries:

        def mine(key: str, table: CaTable | None = table) -> Any:
            return getattr(table, key) if table is not None else None

        account = _first(mine("account"), entry.account, defaults.account) or "default"
        if (url, account) in seen:
            raise loader.fail(
                f"{url} is listed twice (account {account!r}): list each CA once", item_at
            )
        seen.add((url, account))
        eab: EabSettings | None
        if (mine("eab_kid"), mine("eab_hmac_key_file"), mine("eab_hmac_key")) != (None,) * 3:
            assert table is not None
            eab = loader.parse_eab(table, item_at, f"the table of {url}")
        elif len(entries) == 1:
            eab = loader.eab(entry, block)  # one CA: as before, the certificate's or the default
        elif url == default_ca:
            eab = loader.parse_eab(defaults, ("defaults",), "[defaults]")
        else:
            eab = None
        if mine("email") is not None:
            from certherd.config import _check_email

            _check_email(loader, mine("email"), (*item_at, "email"))
        cas.append(
            CaSettings(
                directory_url=url,
                account=account,
                ca_bundle=_first(mine("ca_bundle"), entry.ca_bundle, defaults.ca_bundle),
                email=_first(mine("email"), entry.email, defaults.email),
                agree_tos=bool(_first(mine("agree_tos"), entry.agree_tos, defaults.agree_tos)),
                eab=eab,
            )
        )
    return tuple(cas)
