"""Versioned schema migrations for the SQLite backend.

Each entry of `MIGRATIONS` moves the schema from version i to i+1; `PRAGMA user_version`
records where a database stands. Migrations only ever append: never edit a released one.
"""

from __future__ import annotations

MIGRATIONS: list[str | list[str]] = [
    # 1: directory, mail index, change feed, queue
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE domains(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created REAL NOT NULL);
    CREATE TABLE accounts(
        id INTEGER PRIMARY KEY, address TEXT UNIQUE NOT NULL,
        domain_id INTEGER NOT NULL REFERENCES domains(id),
        password_hash TEXT NOT NULL, quota_bytes INTEGER NOT NULL DEFAULT 0,
        quota_messages INTEGER NOT NULL DEFAULT 0, is_admin INTEGER NOT NULL DEFAULT 0,
        scram_salt BLOB, scram_iter INTEGER, scram_stored BLOB, scram_server BLOB,
        used_bytes INTEGER NOT NULL DEFAULT 0, used_messages INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL);
    CREATE TABLE aliases(id INTEGER PRIMARY KEY, source TEXT NOT NULL, destination TEXT NOT NULL,
        UNIQUE(source, destination));
    CREATE TABLE dkim_keys(domain TEXT NOT NULL, selector TEXT NOT NULL, algorithm TEXT NOT NULL,
        private_key BLOB NOT NULL, public_record TEXT NOT NULL, PRIMARY KEY(domain, selector));
    CREATE TABLE mailboxes(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL, uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL,
        highestmodseq INTEGER NOT NULL, special_use TEXT, UNIQUE(account_id, name));
    CREATE TABLE messages(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
        flags TEXT NOT NULL, internaldate REAL NOT NULL, size INTEGER NOT NULL, blob_key TEXT NOT NULL,
        saved REAL NOT NULL, delivery_key TEXT, PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;
    CREATE UNIQUE INDEX messages_delivery ON messages(mailbox_id, delivery_key) WHERE delivery_key IS NOT NULL;
    CREATE INDEX messages_blob ON messages(blob_key);
    CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
    CREATE TABLE expunged(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
        PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;
    CREATE TABLE subscriptions(account_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY(account_id, name));
    CREATE TABLE metadata(account_id INTEGER NOT NULL, mailbox TEXT NOT NULL, key TEXT NOT NULL,
        value TEXT NOT NULL, PRIMARY KEY(account_id, mailbox, key));
    CREATE TABLE changes(id INTEGER PRIMARY KEY AUTOINCREMENT, account_id INTEGER NOT NULL,
        mailbox_id INTEGER NOT NULL, kind TEXT NOT NULL, modseq INTEGER NOT NULL, at REAL NOT NULL);
    CREATE TABLE queue(id TEXT PRIMARY KEY, sender TEXT NOT NULL, recipients TEXT NOT NULL,
        blob_key TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL, next_attempt REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, ret TEXT NOT NULL DEFAULT '', envid TEXT NOT NULL DEFAULT '',
        warned INTEGER NOT NULL DEFAULT 0, lease_owner TEXT NOT NULL DEFAULT '',
        lease_until REAL NOT NULL DEFAULT 0, extra TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX queue_due ON queue(next_attempt);
    CREATE INDEX queue_blob ON queue(blob_key);
    """,
    # 2: a directory generation counter bumped by triggers, so every process can cache
    # domains, accounts, aliases and mailbox ids and notice changes made by any other process
    [
        "INSERT OR IGNORE INTO meta VALUES ('dirgen', '0')",
        "CREATE TRIGGER dirgen_domains_insert AFTER INSERT ON domains BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_domains_delete AFTER DELETE ON domains BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_accounts_insert AFTER INSERT ON accounts BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_accounts_delete AFTER DELETE ON accounts BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_accounts_update AFTER UPDATE OF password_hash, quota_bytes, quota_messages, is_admin ON accounts BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_aliases_insert AFTER INSERT ON aliases BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_aliases_delete AFTER DELETE ON aliases BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_mailboxes_insert AFTER INSERT ON mailboxes BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_mailboxes_delete AFTER DELETE ON mailboxes BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
        "CREATE TRIGGER dirgen_mailboxes_update AFTER UPDATE OF name ON mailboxes BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dirgen'; END",
    ],
    # 3: small message blobs inline, written in the delivery's own transaction
    "CREATE TABLE blobs(key TEXT PRIMARY KEY, data BLOB NOT NULL)",
    # 4: IMAP \Recent claims (RFC 3501 §2.3.2): per mailbox incarnation (id, uidvalidity) the
    # highest UID already announced as recent, advanced atomically by claim_recent(); ``prev``
    # holds the value before the last claim (what its RETURNING reports). Claims kept until
    # now in the metadata table (pseudo-mailbox "//mailhouse/recent") move here.
    [
        "CREATE TABLE recent(mailbox_id INTEGER PRIMARY KEY, uidvalidity INTEGER NOT NULL,"
        " uid INTEGER NOT NULL, prev INTEGER NOT NULL DEFAULT 0)",
        "INSERT OR REPLACE INTO recent(mailbox_id, uidvalidity, uid)"
        " SELECT m.id, m.uidvalidity, CAST(md.value AS INTEGER) FROM metadata md"
        " JOIN mailboxes m ON md.mailbox = '//mailhouse/recent' AND md.key = CAST(m.id AS TEXT)"
        " AND m.account_id = md.account_id",
        "DELETE FROM metadata WHERE mailbox = '//mailhouse/recent'",
    ],
    # 5: expunged_since (QRESYNC VANISHED, every IMAP sync) reads by modseq, not every UID
    # a mailbox ever expunged
    "CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq)",
    # 6: shared counters and expiring marks (store/limits.py): login failures, bans, send rates,
    # clients that passed the pregreet test
    [
        "CREATE TABLE IF NOT EXISTS limit_events(key TEXT NOT NULL, at REAL NOT NULL, weight INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS limit_events_key ON limit_events(key, at)",
        "CREATE INDEX IF NOT EXISTS limit_events_at ON limit_events(at)",
        "CREATE TABLE IF NOT EXISTS limit_marks(key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL)",
    ],
    # 7: RFC 8474 §5.1 EMAILID, kept with the row (COPY/MOVE and `store copy` carry it even where
    # the blob key changes); existing rows get store.api.emailid_for_blob of their key
    [
        "ALTER TABLE messages ADD COLUMN emailid TEXT NOT NULL DEFAULT ''",
        "UPDATE messages SET emailid = 'M' || blob_key WHERE emailid = '' AND blob_key <> '' AND length(blob_key) < 255"
        " AND blob_key NOT GLOB '*[^A-Za-z0-9_-]*'",
    ],
    # 8: mailbox access-control lists (RFC 4314, store/acl.py): rights per (mailbox, identifier);
    # identifier = account address, "anyone" or "anyone@<domain>"
    [
        "CREATE TABLE IF NOT EXISTS acl(mailbox_id INTEGER NOT NULL, identifier TEXT NOT NULL,"
        " rights TEXT NOT NULL, PRIMARY KEY(mailbox_id, identifier)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS acl_identifier ON acl(identifier)",
        # \\Seen of the other accounts reading a shared mailbox: one row per (mailbox, reader, uid)
        "CREATE TABLE IF NOT EXISTS seen(mailbox_id INTEGER NOT NULL, account_id INTEGER NOT NULL,"
        " uid INTEGER NOT NULL, PRIMARY KEY(mailbox_id, account_id, uid)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS seen_account ON seen(account_id)",
    ],
    # 9: the full-text word index (store/fts.py, store/sqlite/fts.py): a document per blob
    [
        "CREATE TABLE IF NOT EXISTS fts_docs(id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " blob_key TEXT UNIQUE NOT NULL, state INTEGER NOT NULL)",
        "CREATE VIRTUAL TABLE IF NOT EXISTS fts_terms USING fts5(terms, content='', tokenize='ascii', detail='none')",
        "INSERT OR IGNORE INTO meta VALUES ('fts_generation', '0')",
    ],
    # 10: spam learning (store/spam.py): per-account Bayes token counts (token = 63-bit hash) and
    # totals, what each message was trained as, and the per-user allow/block lists
    [
        "CREATE TABLE IF NOT EXISTS spam_tokens(account_id INTEGER NOT NULL REFERENCES accounts(id)"
        " ON DELETE CASCADE, token INTEGER NOT NULL, spam INTEGER NOT NULL, ham INTEGER NOT NULL,"
        " PRIMARY KEY(account_id, token)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS spam_totals(account_id INTEGER PRIMARY KEY REFERENCES accounts(id)"
        " ON DELETE CASCADE, spam INTEGER NOT NULL, ham INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS spam_trained(account_id INTEGER NOT NULL REFERENCES accounts(id)"
        " ON DELETE CASCADE, key TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY(account_id, key))",
        "CREATE TABLE IF NOT EXISTS spam_lists(account_id INTEGER NOT NULL REFERENCES accounts(id)"
        " ON DELETE CASCADE, entry TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY(account_id, entry))",
    ],
    # 11: summaries of DMARC aggregate and TLS-RPT reports received for hosted domains
    # (store/reports.py); the key makes a report delivered twice count once
    [
        "CREATE TABLE IF NOT EXISTS reports(domain TEXT NOT NULL, kind TEXT NOT NULL, org TEXT NOT NULL,"
        " report_id TEXT NOT NULL, begin_at REAL NOT NULL, end_at REAL NOT NULL, received REAL NOT NULL,"
        " rows TEXT NOT NULL, PRIMARY KEY(domain, kind, org, report_id)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS reports_end ON reports(domain, kind, end_at)",
    ],
    # 12: outgoing reports (store/reports.py, reports/outbound.py): per-day aggregated rows of the
    # DMARC aggregate (RFC 7489 §7.2) and TLS-RPT (RFC 8460) reports we send, one row per distinct
    # result (KEY is its canonical JSON) whose count is incremented; and which (kind, day, policy
    # domain) reports a node has claimed to send (the cluster-wide once-only mark)
    [
        "CREATE TABLE IF NOT EXISTS report_rows(kind TEXT NOT NULL, day TEXT NOT NULL, domain TEXT NOT NULL,"
        " key TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY(kind, day, domain, key)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS report_sends(kind TEXT NOT NULL, day TEXT NOT NULL, domain TEXT NOT NULL,"
        " owner TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY(kind, day, domain)) WITHOUT ROWID",
    ],
    # 13: the address book (store/contacts.py): contacts keyed by their vCard UID (RFC 6350 §6.7.6),
    # addresses and groups (CATEGORIES) joined with LF; recipients collected from sent mail
    [
        "CREATE TABLE IF NOT EXISTS contacts(account_id INTEGER NOT NULL REFERENCES accounts(id)"
        " ON DELETE CASCADE, uid TEXT NOT NULL, name TEXT NOT NULL, emails TEXT NOT NULL, notes TEXT NOT NULL,"
        " categories TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY(account_id, uid)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS collected_addrs(account_id INTEGER NOT NULL REFERENCES accounts(id)"
        " ON DELETE CASCADE, address TEXT NOT NULL, name TEXT NOT NULL, last_used REAL NOT NULL,"
        " count INTEGER NOT NULL, PRIMARY KEY(account_id, address)) WITHOUT ROWID",
    ],
    # 14: webmail sessions (store/websessions.py): the SHA-256 of the cookie's random token, so a
    # logout or password change ends a session on every node; and per-user settings (key/value)
    [
        "CREATE TABLE IF NOT EXISTS web_sessions(id_hash TEXT PRIMARY KEY, account_id INTEGER NOT NULL"
        " REFERENCES accounts(id) ON DELETE CASCADE, csrf TEXT NOT NULL, created REAL NOT NULL,"
        " last_seen REAL NOT NULL, expires REAL NOT NULL, client TEXT NOT NULL) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS web_sessions_account ON web_sessions(account_id)",
        "CREATE TABLE IF NOT EXISTS user_settings(account_id INTEGER NOT NULL REFERENCES accounts(id)"
        " ON DELETE CASCADE, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(account_id, key)) WITHOUT ROWID",
    ],
    # 15: per-account Sieve scripts (store/sieve.py; ManageSieve, RFC 5804): at most one active per
    # account (the partial unique index); vacation/duplicate memory lives in limit_marks
    [
        "CREATE TABLE IF NOT EXISTS sieve_scripts(account_id INTEGER NOT NULL REFERENCES accounts(id)"
        " ON DELETE CASCADE, name TEXT NOT NULL, content TEXT NOT NULL, size INTEGER NOT NULL,"
        " active INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY(account_id, name))",
        "CREATE UNIQUE INDEX IF NOT EXISTS sieve_scripts_active ON sieve_scripts(account_id) WHERE active = 1",
    ],
]
