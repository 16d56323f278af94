"""The PostgreSQL storage's schema, its migrations, and what is said about its URL.

certherd creates and migrates its own tables (no separate tool): the schema version is
the row of ``certherd_schema``; each migration runs in one transaction, under a
transaction-scoped advisory lock, so two nodes starting at once migrate once and the
other waits and finds the work done. A database whose schema is newer than this
certherd knows is refused (ConfigError: upgrade certherd), never written.

::

    certherd_schema  (version, migrated, by)         one row per migration applied
    certherd_values  (key, data, size, private,      every value; key in "C" collation
                      modified, version)             (byte order: prefix LIKE uses the index)
    certherd_leases  (name, holder, token, granted,  one row per lease name, kept after
                      expires)                       release (its token is the floor)
    certherd_lease_tokens, certherd_value_versions   the two sequences

Privileges: every object is REVOKEd FROM PUBLIC (a new table grants PUBLIC nothing
already; the REVOKE says so and undoes a database whose default privileges grant it).
``certherd_values`` has row-level security with one policy: a role that an administrator
grants SELECT (a monitoring role) sees no ``private`` row; certherd's own role owns the
tables and so bypasses the policy. Superusers bypass everything.

This module imports nothing of psycopg: it takes the connection it is given.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from certherd.errors import ConfigError

__all__ = ["LATEST", "MIGRATIONS", "URL_SCHEMES", "check_url", "migrate", "redact"]

URL_SCHEMES = ("postgresql", "postgres")

_DUE_FUNCTION = """CREATE FUNCTION certherd_due(data bytea) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    doc jsonb;
    next_check timestamptz;
BEGIN
    -- When a lineage's state (state/<lineage>.json) says to look at it next: its
    -- next_check (now when it has none), earlier when its ARI Retry-After has passed.
    -- A state that cannot be read is due now (the node that claims it reports it).
    BEGIN
        doc := convert_from(data, 'UTF8')::jsonb;
        next_check := coalesce((doc->>'next_check')::timestamptz, now());
        IF doc->>'version' IS NOT NULL AND doc->>'ari_retry_at' IS NOT NULL THEN
            next_check := least(next_check, (doc->>'ari_retry_at')::timestamptz);
        END IF;
        RETURN next_check;
    EXCEPTION WHEN others THEN
        RETURN now();
    END;
END $$"""
"""The due moment of a lineage from its state's bytes (the schedule's one rule)."""


_LIVE_FUNCTION = """CREATE FUNCTION certherd_live_version(data bytea) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN (convert_from(data, 'UTF8')::jsonb->>'version')::integer;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$"""
"""The version a live record (``live/<lineage>.json``) names; NULL when unreadable."""

_FOLLOW_FUNCTION = """CREATE FUNCTION certherd_schedule_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed text := CASE WHEN TG_OP = 'DELETE' THEN OLD.key ELSE NEW.key END;
    folder text := split_part(changed, '/', 1);
    target text := substr(changed, length(folder) + 2, length(changed) - length(folder) - 6);
    doc jsonb;
    version integer;
BEGIN
    -- Keeps certherd_schedule in step with every write, in the write's transaction:
    -- renewal/<l>.json (desired state: due now, its CA when it has only one),
    -- state/<l>.json (when it is due next), live/<l>.json (the live version, and when
    -- and by which lease holder it was obtained). Nodes hear of changes by NOTIFY.
    IF folder NOT IN ('renewal', 'state', 'live') OR changed NOT LIKE '%.json'
            OR position('/' IN target) > 0 OR target = '' THEN
        RETURN NULL;
    END IF;
    IF folder = 'renewal' THEN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM certherd_schedule s WHERE s.lineage = target;
        ELSIF TG_OP = 'INSERT' OR OLD.data IS DISTINCT FROM NEW.data THEN
            BEGIN
                doc := convert_from(NEW.data, 'UTF8')::jsonb;
            EXCEPTION WHEN others THEN
                doc := NULL;
            END;
            INSERT INTO certherd_schedule AS s (lineage, due, ca, live, obtained, obtained_by)
                SELECT target, now(),
                    CASE WHEN jsonb_array_length(coalesce(doc->'fallback_cas', '[]')) = 0
                         THEN doc->>'directory_url' END,
                    certherd_live_version(v.data), v.modified,
                    (SELECT l.holder FROM certherd_leases l WHERE l.name = target)
                FROM (SELECT 1) AS one
                LEFT JOIN certherd_values v ON v.key = 'live/' || target || '.json'
            ON CONFLICT (lineage) DO UPDATE SET due = now(), ca = excluded.ca;
        END IF;
        PERFORM pg_notify('certherd_schedule', target);
    ELSIF folder = 'state' AND TG_OP <> 'DELETE' THEN
        BEGIN
            doc := convert_from(NEW.data, 'UTF8')::jsonb;
            UPDATE certherd_schedule s SET due = certherd_due(NEW.data),
                not_after = (doc->>'not_after')::timestamptz WHERE s.lineage = target;
        EXCEPTION WHEN others THEN  -- unreadable: due now (the node claiming it says why)
            UPDATE certherd_schedule s SET due = now() WHERE s.lineage = target;
        END;
    ELSIF folder = 'live' THEN
        IF TG_OP = 'DELETE' THEN
            UPDATE certherd_schedule s SET live = NULL WHERE s.lineage = target;
        ELSE
            version := certherd_live_version(NEW.data);
            UPDATE certherd_schedule s SET live = version, obtained = now(),
                obtained_by = (SELECT l.holder FROM certherd_leases l
                               WHERE l.name = target AND l.holder IS NOT NULL)
                WHERE s.lineage = target AND s.live IS DISTINCT FROM version;
        END IF;
        PERFORM pg_notify('certherd_live', target);
    END IF;
    RETURN NULL;
END $$"""
"""The trigger function that keeps the schedule (migration 2)."""

_FOLLOW_FUNCTION_3 = _FOLLOW_FUNCTION.replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"
).replace(
    "length(changed) - length(folder) - 6);",
    "greatest(length(changed) - length(folder) - 6, 0));",
)
"""certherd_schedule_follow, version 3: a key outside a folder (``index.json``) is
written again (version 2 computed a negative substring length for it, failing the write)."""

_DUE_FUNCTION_3 = _DUE_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace(
    "        RETURN next_check;",
    "        IF doc->>'deploy_owed' = 'true' THEN\n"
    "            RETURN now();\n"
    "        END IF;\n"
    "        RETURN next_check;",
)
"""certherd_due, version 3: deploy hooks owed for the live version make it due now."""

_FOLLOW_FUNCTION_5 = _FOLLOW_FUNCTION_3.replace(
    "BEGIN\n    -- Keeps certherd_schedule",
    "BEGIN\n"
    "    -- challenges/...: the listeners of every node follow the key authorizations.\n"
    "    IF folder = 'challenges' THEN\n"
    "        PERFORM pg_notify('certherd_challenges', changed);\n"
    "        RETURN NULL;\n"
    "    END IF;\n"
    "    -- Keeps certherd_schedule",
)
"""certherd_schedule_follow, version 5: a write or delete below ``challenges/`` notifies
``certherd_challenges`` with its key (the challenge listeners' in-memory view follows it,
instead of reading the database for each validation request)."""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1
        """CREATE TABLE certherd_values (
            key text COLLATE "C" PRIMARY KEY,
            data bytea NOT NULL,
            size bigint NOT NULL,
            private boolean NOT NULL DEFAULT false,
            modified timestamptz NOT NULL DEFAULT now(),
            version bigint NOT NULL
        )""",
        "CREATE SEQUENCE certherd_value_versions",
        """CREATE TABLE certherd_leases (
            name text COLLATE "C" PRIMARY KEY,
            holder text,
            token bigint NOT NULL,
            granted timestamptz NOT NULL,
            expires timestamptz NOT NULL
        )""",
        "CREATE SEQUENCE certherd_lease_tokens",
        "ALTER TABLE certherd_values ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY certherd_public_values ON certherd_values FOR SELECT USING (NOT private)",
        "REVOKE ALL ON certherd_values, certherd_leases, certherd_schema FROM PUBLIC",
        "REVOKE ALL ON SEQUENCE certherd_value_versions, certherd_lease_tokens FROM PUBLIC",
    ),
    (  # version 2: the fleet's schedule and shared CA backoff (certherd.storage.pgfleet)
        """CREATE TABLE certherd_schedule (
            lineage text COLLATE "C" PRIMARY KEY,
            due timestamptz NOT NULL,
            ca text,
            live integer,
            not_after timestamptz,
            obtained timestamptz,
            obtained_by text
        )""",
        "CREATE INDEX certherd_schedule_due ON certherd_schedule (due)",
        """CREATE TABLE certherd_ca_backoff (
            ca text PRIMARY KEY,
            until timestamptz NOT NULL,
            reason text NOT NULL,
            by text NOT NULL
        )""",
        _DUE_FUNCTION,
        _LIVE_FUNCTION,
        _FOLLOW_FUNCTION,
        "CREATE TRIGGER certherd_schedule_follow AFTER INSERT OR UPDATE OR DELETE"
        " ON certherd_values FOR EACH ROW EXECUTE FUNCTION certherd_schedule_follow()",
        # Lineages stored before this version: due now (each is checked once, then
        # scheduled from its state), with their live version.
        """INSERT INTO certherd_schedule (lineage, due, live, obtained)
            SELECT substr(v.key, 9, length(v.key) - 13), now(),
                certherd_live_version(l.data), l.modified
            FROM certherd_values v LEFT JOIN certherd_values l
                ON l.key = 'live/' || substr(v.key, 9, length(v.key) - 13) || '.json'
            WHERE v.key LIKE 'renewal/%.json' AND position('/' IN substr(v.key, 9)) = 0
            ON CONFLICT DO NOTHING""",
        "REVOKE ALL ON certherd_schedule, certherd_ca_backoff FROM PUBLIC",
        "REVOKE ALL ON FUNCTION certherd_due(bytea), certherd_live_version(bytea),"
        " certherd_schedule_follow() FROM PUBLIC",
    ),
    (  # version 3: deploy hooks owed make a lineage due now; keys outside a folder
        _DUE_FUNCTION_3,
        _FOLLOW_FUNCTION_3,
        """UPDATE certherd_schedule s SET due = least(s.due, certherd_due(v.data))
            FROM certherd_values v WHERE v.key = 'state/' || s.lineage || '.json'""",
    ),
    (  # version 4: the leases held now, found without a scan of every lease ever granted
        "CREATE INDEX certherd_leases_held ON certherd_leases (expires) WHERE holder IS NOT NULL",
    ),
    (  # version 5: key authorizations notified (certherd.challenges.view)
        _FOLLOW_FUNCTION_5,
    ),
)
"""Migration N (1-based) brings the schema from version N-1 to N; append, never edit."""

LATEST = len(MIGRATIONS)

_LOCK_KEY = 0x63657274_68657264 & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock taken while migrating (``certherd`` in ASCII)."""


async def migrate(connection: Any, *, where: str) -> int:
    """Bring the schema of ``connection``'s database to :data:`LATEST`; its version.

    ``connection``: a psycopg AsyncConnection in autocommit mode. ConfigError if the
    schema is newer than this certherd (``where`` names the database in that line).
    """
    version = await _version(connection)
    _refuse_newer(version, where)
    if version == LATEST:
        return version  # the usual start: two small queries, no lock
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS certherd_schema ("
            " version integer PRIMARY KEY, migrated timestamptz NOT NULL DEFAULT now(),"
            " by text NOT NULL)"
        )
        version = await _version(connection)  # another node may have migrated meanwhile
        _refuse_newer(version, where)
        from certherd import __version__

        for number in range(version + 1, LATEST + 1):
            for statement in MIGRATIONS[number - 1]:
                await connection.execute(statement)
            await connection.execute(
                "INSERT INTO certherd_schema (version, by) VALUES (%s, %s)",
                (number, f"certherd {__version__}"),
            )
    return LATEST


async def _version(connection: Any) -> int:
    cursor = await connection.execute(
        "SELECT CASE WHEN to_regclass('certherd_schema') IS NULL THEN -1 END"
    )
    row = await cursor.fetchone()
    if row[0] == -1:
        return 0
    cursor = await connection.execute("SELECT coalesce(max(version), 0) FROM certherd_schema")
    row = await cursor.fetchone()
    return int(row[0])


def _refuse_newer(version: int, where: str) -> None:
    if version > LATEST:
        from certherd import __version__

        raise ConfigError(
            f"the PostgreSQL storage {where} has schema version {version}, newer than "
            f"certherd {__version__} knows (version {LATEST}): upgrade certherd on this host"
        )


_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def check_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database (``postgresql://`` or ``postgres://``),
    else a ConfigError in one line (the password never shown)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"the storage URL {redact(url)!r} is not a PostgreSQL URL: write "
            "postgresql://USER@HOST[:PORT]/DATABASE (or ?host=/socket/dir); "
            "a folder is given as a path, not as a URL"
        )
    return url


def redact(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as
    ``***``: what every message and log line shows of a storage URL."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, hosts = netloc.rpartition("@")
            if ":" in user:
                user = user.partition(":")[0] + ":***"
            netloc = f"{user}@{hosts}"
        query = [
            (name, "***" if name.lower() in _SECRET_PARAMS else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        shown = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/*"), ""))
    except ValueError:
        return "(an unreadable URL)"
    return re.sub(r"[\x00-\x1f\x7f]", "?", shown)
