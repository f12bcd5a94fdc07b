"""Versioned schema migrations for the PostgreSQL backend.

Each entry of `MIGRATIONS` moves the schema from version i to i+1; the one-row table
`schema_version` records where a database stands. Migrations only ever append: never
edit a released one.

Invariants:
- Migrations run inside one transaction that first takes `pg_advisory_xact_lock(MIGRATION_LOCK)`,
  so several nodes starting at once apply each migration exactly once (the others wait,
  then see the new version and do nothing). PostgreSQL DDL is transactional: a failed
  migration leaves the database at the previous version.
- Text columns that are sorted or compared for listing (`name`, `address`, `source`, …)
  use the "C" collation, so ordering is bytewise as in the SQLite backend and does not
  depend on the server's locale.
"""

from __future__ import annotations

MIGRATION_LOCK = 0x6D61696C686F7573  # "mailhous": advisory-lock key for schema changes

BOOTSTRAP = "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)"

MIGRATIONS: list[str] = [
    # 1: directory, mail index, queue, blobs
    """
    CREATE TABLE counters(name TEXT COLLATE "C" PRIMARY KEY, value BIGINT NOT NULL);
    CREATE TABLE domains(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT COLLATE "C" UNIQUE NOT NULL, created DOUBLE PRECISION NOT NULL);
    CREATE TABLE accounts(
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, address TEXT COLLATE "C" UNIQUE NOT NULL,
        domain_id BIGINT NOT NULL REFERENCES domains(id),
        password_hash TEXT NOT NULL, quota_bytes BIGINT NOT NULL DEFAULT 0,
        quota_messages BIGINT NOT NULL DEFAULT 0, is_admin BOOLEAN NOT NULL DEFAULT false,
        scram_salt BYTEA, scram_iter INTEGER, scram_stored BYTEA, scram_server BYTEA,
        used_bytes BIGINT NOT NULL DEFAULT 0, used_messages BIGINT NOT NULL DEFAULT 0,
        created DOUBLE PRECISION NOT NULL);
    CREATE TABLE aliases(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source TEXT COLLATE "C" NOT NULL, destination TEXT COLLATE "C" NOT NULL,
        UNIQUE(source, destination));
    CREATE TABLE dkim_keys(domain TEXT COLLATE "C" NOT NULL, selector TEXT COLLATE "C" NOT NULL,
        algorithm TEXT COLLATE "C" NOT NULL, private_key BYTEA NOT NULL, public_record TEXT NOT NULL,
        PRIMARY KEY(domain, selector));
    CREATE TABLE mailboxes(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        name TEXT COLLATE "C" NOT NULL, uidvalidity BIGINT NOT NULL, uidnext BIGINT NOT NULL,
        highestmodseq BIGINT NOT NULL, special_use TEXT, UNIQUE(account_id, name));
    CREATE TABLE messages(mailbox_id BIGINT NOT NULL, uid BIGINT NOT NULL, modseq BIGINT NOT NULL,
        flags TEXT[] NOT NULL, internaldate DOUBLE PRECISION NOT NULL, size BIGINT NOT NULL,
        blob_key TEXT COLLATE "C" NOT NULL, saved DOUBLE PRECISION NOT NULL, delivery_key TEXT,
        PRIMARY KEY(mailbox_id, uid));
    CREATE UNIQUE INDEX messages_delivery ON messages(mailbox_id, delivery_key) WHERE delivery_key IS NOT NULL;
    CREATE INDEX messages_blob ON messages(blob_key);
    CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
    CREATE TABLE expunged(mailbox_id BIGINT NOT NULL, uid BIGINT NOT NULL, modseq BIGINT NOT NULL,
        PRIMARY KEY(mailbox_id, uid));
    CREATE TABLE subscriptions(account_id BIGINT NOT NULL, name TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY(account_id, name));
    CREATE TABLE metadata(account_id BIGINT NOT NULL, mailbox TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL, value TEXT NOT NULL, PRIMARY KEY(account_id, mailbox, key));
    CREATE TABLE queue(id TEXT COLLATE "C" PRIMARY KEY, sender TEXT NOT NULL, recipients JSONB NOT NULL,
        blob_key TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL,
        next_attempt DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        ret TEXT NOT NULL DEFAULT '', envid TEXT NOT NULL DEFAULT '', warned BOOLEAN NOT NULL DEFAULT false,
        lease_owner TEXT NOT NULL DEFAULT '', lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        extra JSONB NOT NULL DEFAULT '{}');
    CREATE INDEX queue_due ON queue(next_attempt);
    CREATE INDEX queue_blob ON queue(blob_key);
    CREATE TABLE blobs(key TEXT COLLATE "C" PRIMARY KEY, data BYTEA NOT NULL);
    """,
    # 2: directory generation counter bumped by triggers (per-process directory caches)
    """
    INSERT INTO counters(name, value) VALUES ('dirgen', 0) ON CONFLICT DO NOTHING;
    CREATE FUNCTION mailhouse_bump_dirgen() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'dirgen'; RETURN NULL; END $$;
    CREATE TRIGGER dirgen_domains AFTER INSERT OR DELETE OR UPDATE ON domains
        FOR EACH STATEMENT EXECUTE FUNCTION mailhouse_bump_dirgen();
    CREATE TRIGGER dirgen_accounts AFTER INSERT OR DELETE OR UPDATE OF password_hash, quota_bytes, quota_messages,
        is_admin ON accounts FOR EACH STATEMENT EXECUTE FUNCTION mailhouse_bump_dirgen();
    CREATE TRIGGER dirgen_aliases AFTER INSERT OR DELETE OR UPDATE ON aliases
        FOR EACH STATEMENT EXECUTE FUNCTION mailhouse_bump_dirgen();
    CREATE TRIGGER dirgen_mailboxes AFTER INSERT OR DELETE OR UPDATE OF name ON mailboxes
        FOR EACH STATEMENT EXECUTE FUNCTION mailhouse_bump_dirgen();
    """,
    # 3: IMAP \Recent claims (RFC 3501 §2.3.2), see the SQLite schema's migration 4
    """
    CREATE TABLE recent(mailbox_id BIGINT PRIMARY KEY, uidvalidity BIGINT NOT NULL, uid BIGINT NOT NULL,
        prev BIGINT NOT NULL DEFAULT 0);
    INSERT INTO recent(mailbox_id, uidvalidity, uid)
        SELECT m.id, m.uidvalidity, md.value::bigint FROM metadata md JOIN mailboxes m
        ON md.mailbox = '//mailhouse/recent' AND md.key = m.id::text AND m.account_id = md.account_id
        WHERE md.value ~ '^[0-9]{1,18}$'
        ON CONFLICT (mailbox_id) DO NOTHING;
    DELETE FROM metadata WHERE mailbox = '//mailhouse/recent';
    """,
    # 4: secrets shared by every node (the webmail's cookie key); SQLite keeps them in `meta`
    """
    CREATE TABLE secrets(name TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 5: expunged_since (QRESYNC VANISHED, every IMAP sync) reads by modseq
    """
    CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq);
    """,
    # 6: shared counters and expiring marks (store/limits.py), see the SQLite schema's migration 6
    """
    CREATE TABLE limit_events(key TEXT COLLATE "C" NOT NULL, at DOUBLE PRECISION NOT NULL, weight INTEGER NOT NULL);
    CREATE INDEX limit_events_key ON limit_events(key, at);
    CREATE INDEX limit_events_at ON limit_events(at);
    CREATE TABLE limit_marks(key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL,
        expires DOUBLE PRECISION NOT NULL);
    """,
    # 7: RFC 8474 §5.1 EMAILID kept with the row, see the SQLite schema's migration 7
    """
    ALTER TABLE messages ADD COLUMN IF NOT EXISTS emailid TEXT COLLATE "C" NOT NULL DEFAULT '';
    UPDATE messages SET emailid = 'M' || blob_key WHERE emailid = '' AND blob_key ~ '^[A-Za-z0-9_-]{1,254}$';
    """,
    # 8: mailbox access-control lists (RFC 4314), see the SQLite schema's migration 8
    """
    CREATE TABLE acl(mailbox_id BIGINT NOT NULL, identifier TEXT COLLATE "C" NOT NULL, rights TEXT NOT NULL,
        PRIMARY KEY(mailbox_id, identifier));
    CREATE INDEX acl_identifier ON acl(identifier);
    CREATE TABLE seen(mailbox_id BIGINT NOT NULL, account_id BIGINT NOT NULL, uid BIGINT NOT NULL,
        PRIMARY KEY(mailbox_id, account_id, uid));
    CREATE INDEX seen_account ON seen(account_id);
    """,
    # 9: the full-text word index (store/fts.py, store/postgres/fts.py): a tsvector per blob + GIN
    """
    CREATE TABLE fts_docs(blob_key TEXT COLLATE "C" PRIMARY KEY, state SMALLINT NOT NULL, terms TSVECTOR);
    CREATE INDEX fts_docs_terms ON fts_docs USING GIN (terms);
    INSERT INTO counters(name, value) VALUES ('fts_generation', 0) ON CONFLICT DO NOTHING;
    """,
    # 10: spam learning (store/spam.py), see the SQLite schema's migration 10
    """
    CREATE TABLE spam_tokens(account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        token BIGINT NOT NULL, spam INTEGER NOT NULL, ham INTEGER NOT NULL, PRIMARY KEY(account_id, token));
    CREATE TABLE spam_totals(account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        spam INTEGER NOT NULL, ham INTEGER NOT NULL);
    CREATE TABLE spam_trained(account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        key TEXT COLLATE "C" NOT NULL, kind TEXT NOT NULL, PRIMARY KEY(account_id, key));
    CREATE TABLE spam_lists(account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        entry TEXT COLLATE "C" NOT NULL, kind TEXT NOT NULL, PRIMARY KEY(account_id, entry));
    """,
    # 11: received DMARC/TLS-RPT report summaries (store/reports.py), see the SQLite schema's migration 11
    """
    CREATE TABLE reports(domain TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL,
        org TEXT COLLATE "C" NOT NULL, report_id TEXT COLLATE "C" NOT NULL,
        begin_at DOUBLE PRECISION NOT NULL, end_at DOUBLE PRECISION NOT NULL,
        received DOUBLE PRECISION NOT NULL, rows TEXT NOT NULL, PRIMARY KEY(domain, kind, org, report_id));
    CREATE INDEX reports_end ON reports(domain, kind, end_at);
    """,
    # 12: outgoing report rows and send claims (store/reports.py), see the SQLite schema's migration 12
    """
    CREATE TABLE report_rows(kind TEXT COLLATE "C" NOT NULL, day TEXT COLLATE "C" NOT NULL,
        domain TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, count BIGINT NOT NULL,
        PRIMARY KEY(kind, day, domain, key));
    CREATE TABLE report_sends(kind TEXT COLLATE "C" NOT NULL, day TEXT COLLATE "C" NOT NULL,
        domain TEXT COLLATE "C" NOT NULL, owner TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY(kind, day, domain));
    """,
    # 13: the address book (store/contacts.py), see the SQLite schema's migration 13
    """
    CREATE TABLE contacts(account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        uid TEXT COLLATE "C" NOT NULL, name TEXT NOT NULL, emails TEXT NOT NULL, notes TEXT NOT NULL,
        categories TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL, PRIMARY KEY(account_id, uid));
    CREATE TABLE collected_addrs(account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        address TEXT COLLATE "C" NOT NULL, name TEXT NOT NULL, last_used DOUBLE PRECISION NOT NULL,
        count BIGINT NOT NULL, PRIMARY KEY(account_id, address));
    """,
    # 14: webmail sessions and per-user settings (store/websessions.py), see the SQLite schema's migration 14
    """
    CREATE TABLE web_sessions(id_hash TEXT COLLATE "C" PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE, csrf TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
        expires DOUBLE PRECISION NOT NULL, client TEXT NOT NULL);
    CREATE INDEX web_sessions_account ON web_sessions(account_id);
    CREATE TABLE user_settings(account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        key TEXT COLLATE "C" NOT NULL, value TEXT NOT NULL, PRIMARY KEY(account_id, key));
    """,
    # 15: per-account Sieve scripts (store/sieve.py), see the SQLite schema's migration 15
    """
    CREATE TABLE IF NOT EXISTS sieve_scripts(account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT COLLATE "C" NOT NULL, content TEXT NOT NULL, size INTEGER NOT NULL, active INTEGER NOT NULL,
        updated DOUBLE PRECISION NOT NULL, PRIMARY KEY(account_id, name));
    CREATE UNIQUE INDEX IF NOT EXISTS sieve_scripts_active ON sieve_scripts(account_id) WHERE active = 1;
    """,
]
