"""Maildir as an import source: Maildir++ (``.a.b`` folders) and Dovecot ``LAYOUT=fs`` (``a/b``).

Spec: https://cr.yp.to/proto/maildir.html (``unique:2,FLAGS``, flag letters in ASCII order),
Maildir++ (folders ``.name`` under the root, hierarchy by ``.``), Dovecot's maildir format
(https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/): ``dovecot-keywords`` maps the
info letters ``a``–``z`` to keyword names (``<index> <name>`` lines, ``a`` = 0),
``dovecot-uidlist`` holds UIDVALIDITY (``V``) and one ``<uid> [fields] :<base name>`` line per
message; folder names are modified UTF-7 (RFC 3501 §5.1.3) unless Dovecot's ``UTF8`` option is on.

Invariants: a message's identity is its base name (the part before ``:``), which never changes
when flags do or when it moves from ``new/`` to ``cur/``; the internal date is the file's mtime
(Dovecot keeps INTERNALDATE there), else the time in the base name. Python's `mailbox.Maildir`
is not used: it reads neither Dovecot's keyword and UID files nor ``LAYOUT=fs`` trees, and its
folder listing hides the names it cannot parse, which the report must name instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from mailhouse.proto.imap import mutf7
from mailhouse.transfer.importer import SourceError, SourceFolder, SourceMessage

# https://cr.yp.to/proto/maildir.html: the "2," info letters (P = passed: RFC 5550 $Forwarded)
FLAG_LETTERS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
SUBDIRS = ("cur", "new", "tmp")


def _is_maildir(p: Path) -> bool:
    return (p / "cur").is_dir() or (p / "new").is_dir()


def _decode_level(raw: str) -> str:
    """One level of a folder name: modified UTF-7 as Dovecot writes it, else as the file system has it."""
    try:
        b = raw.encode("ascii")
    except UnicodeEncodeError:
        return raw  # UTF-8 names (Dovecot's UTF8 option) or bytes kept as surrogate escapes
    try:
        return mutf7.decode(b)
    except mutf7.MUTF7Error:
        return raw


def read_keywords(folder: Path) -> dict[str, str]:
    """``dovecot-keywords``: {info letter: keyword}."""
    out: dict[str, str] = {}
    try:
        text = (folder / "dovecot-keywords").read_text("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        idx, _, name = line.partition(" ")
        if idx.isdigit() and int(idx) < 26 and name.strip():
            out[chr(ord("a") + int(idx))] = name.strip()
    return out


def read_uidlist(folder: Path) -> tuple[int, dict[str, int]]:
    """``dovecot-uidlist``: (UIDVALIDITY or 0, {base name: UID})."""
    try:
        lines = (folder / "dovecot-uidlist").read_text("utf-8", "surrogateescape").splitlines()
    except OSError:
        return 0, {}
    if not lines:
        return 0, {}
    head = lines[0].split()
    uv = 0
    if head and head[0] == "1" and len(head) >= 2 and head[1].isdigit():
        uv = int(head[1])  # version 1: "1 <uidvalidity> <nextuid>"
    else:
        for f in head[1:]:
            if f.startswith("V") and f[1:].isdigit():
                uv = int(f[1:])
    uids: dict[str, int] = {}
    for line in lines[1:]:
        first, _, rest = line.partition(" ")
        if not first.isdigit():
            continue
        # version 3: "<uid> [extension fields] :<filename>"; version 1: "<uid> <filename>"
        fname = rest.split(" :", 1)[1] if " :" in rest else rest.lstrip(":").split(" ")[-1]
        if rest.startswith(":"):
            fname = rest[1:]
        uids[fname.split(":", 1)[0]] = int(first)
    return uv, uids


def parse_info(name: str, keywords: dict[str, str]) -> tuple[str, frozenset[str]]:
    """(base name, flags) of a Maildir file name; SourceError for a name the spec does not allow."""
    base, sep, info = name.partition(":")
    if not base:
        raise SourceError("broken Maildir name (no unique part)")
    if not sep:
        return base, frozenset()
    if not info.startswith("2,"):
        raise SourceError(f"broken Maildir name (info {info!r} is not '2,FLAGS')")
    flags: set[str] = set()
    for c in info[2:]:
        if c in FLAG_LETTERS:
            flags.add(FLAG_LETTERS[c])
        elif c in keywords:
            flags.add(keywords[c])
        elif "a" <= c <= "z":
            continue  # a keyword letter without a name in dovecot-keywords: nothing to keep
        elif c == ",":
            continue  # Dovecot's extra info fields follow a comma
        else:
            raise SourceError(f"broken Maildir name (unknown flag letter {c!r})")
    return base, frozenset(flags)


def _find_base(folder: Path, base: str) -> str | None:
    for sub in ("cur", "new"):
        try:
            for e in os.scandir(folder / sub):
                if e.name == base or e.name.startswith(base + ":"):
                    return e.path
        except OSError:
            continue
    return None


class MaildirSource:
    """`importer.Source` over a Maildir tree rooted at PATH (INBOX = PATH itself)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: not a directory")

    def folders(self) -> list[SourceFolder]:
        found: list[tuple[str, Path]] = []
        if _is_maildir(self.root):
            found.append(("INBOX", self.root))
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not entry.is_dir() or entry.name in SUBDIRS:
                continue
            p = Path(entry.path)
            if entry.name.startswith("."):  # Maildir++: ".a.b" is a/b
                if entry.name in (".", "..") or not _is_maildir(p):
                    continue
                levels = [_decode_level(x) for x in entry.name[1:].split(".")]
                found.append(("/".join(levels), p))
            else:  # Dovecot LAYOUT=fs: a/b is a/b
                found += self._fs_tree(p, [entry.name])
        out: list[SourceFolder] = []
        for name, p in found:
            uv, _ = read_uidlist(p)
            out.append(SourceFolder(name, str(p), None, uv))
        return out

    def _fs_tree(self, p: Path, levels: list[str]) -> list[tuple[str, Path]]:
        out: list[tuple[str, Path]] = []
        if _is_maildir(p):
            out.append(("/".join(_decode_level(x) for x in levels), p))
        try:
            entries = sorted(os.scandir(p), key=lambda e: e.name)
        except OSError:
            return out
        for e in entries:
            if e.is_dir() and e.name not in SUBDIRS and not e.name.startswith("."):
                out += self._fs_tree(Path(e.path), [*levels, e.name])
        return out

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        p = Path(folder.where)
        keywords = read_keywords(p)
        uv, uids = read_uidlist(p)
        listed: list[SourceMessage] = []
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(p / sub))
            except OSError:
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue  # not a message (the spec: readers skip dot files)
                where = f"{folder.where}/{sub}/{e.name}"
                try:
                    st = e.stat()
                except OSError as err:
                    listed.append(SourceMessage("maildir:" + e.name, where, 0, error=f"cannot stat: {err}"))
                    continue
                if not e.is_file():
                    listed.append(SourceMessage("maildir:" + e.name, where, 0, error="not a regular file"))
                    continue
                try:
                    base, flags = parse_info(e.name, keywords)
                except SourceError as err:
                    listed.append(SourceMessage("maildir:" + e.name, where, st.st_size, error=str(err)))
                    continue
                date = float(int(st.st_mtime))  # INTERNALDATE has whole seconds (RFC 9051 §2.3.3)
                stamp = base.split(".", 1)[0]
                if date <= 0 and stamp.isdigit():
                    date = float(stamp)
                listed.append(
                    SourceMessage(
                        "maildir:" + base,
                        where,
                        st.st_size,
                        flags,
                        date,
                        uids.get(base, 0) if uv else 0,
                        None,
                        e.path,
                    )
                )
        # ascending source UID (those the uidlist does not know yet last, by name: delivery order)
        listed.sort(key=lambda m: (m.uid == 0, m.uid, m.where))
        return iter(listed)

    def read(self, msg: SourceMessage, max_size: int) -> tuple[bytes, SourceMessage]:
        assert isinstance(msg.ref, str)
        path = msg.ref
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            # a running Dovecot renamed it since the listing (a flag changed, or new/ -> cur/):
            # the same base name in cur/ or new/ is the same message
            moved = _find_base(Path(path).parent.parent, msg.key.removeprefix("maildir:"))
            if moved is None:
                raise SourceError("gone from the Maildir (expunged during the import)") from None
            f = open(moved, "rb")  # noqa: SIM115 - closed below
        with f:
            data = f.read(max_size + 1)
        return data, replace(msg, size=len(data))

    def close(self) -> None:
        pass
