"""Reading catalogs: gettext ``.mo`` and ``.po``, Qt ``.qm``, and aligned plain text.

Each reader returns (source, translation) pairs; ``find_catalogs`` finds the
German catalogs in an extracted package tree.
"""

from pathlib import Path, PurePosixPath
import re
import struct

from dyn_dnn_ros.translation.corpus.config import ParallelFiles

# German catalogs inside a package: gettext's de/LC_MESSAGES/x.{mo,po}, and de.po,
# x_de.qm, x.de.po, x-de.qm as Qt and some projects name them (de_DE alike).
CATALOG_RE = re.compile(
    r'(?:/de(?:_DE)?/LC_MESSAGES/[^/]+|(?:^|[/_.-])de(?:_DE)?)\.(?:mo|po|qm)$')


def read_catalog(path) -> list[tuple[str, str]]:
    """(source, translation) pairs of a .mo, .po or .qm catalog (see the readers)."""
    suffix = Path(path).suffix
    reader = {'.mo': read_mo, '.po': read_po, '.qm': read_qm}.get(suffix)
    if reader is None:
        raise ValueError(f'{path}: not a catalog (.mo, .po or .qm)')
    return reader(path)


def read_mo(path) -> list[tuple[str, str]]:
    r"""Return the (msgid, msgstr) pairs of a compiled gettext catalog, header included.

    Context is kept as gettext encodes it (``ctxt\x04msgid``); plural entries
    give their singular msgid and first msgstr.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 28:
        raise ValueError(f'{path}: too short for a .mo catalog')
    for order in ('<', '>'):
        magic, _revision, count, ids_at, strs_at = struct.unpack_from(f'{order}5I', data)
        if magic == 0x950412de:
            break
    else:
        raise ValueError(f'{path}: not a .mo catalog (bad magic number)')

    def strings(table_at):
        for i in range(count):
            length, offset = struct.unpack_from(f'{order}2I', data, table_at + 8 * i)
            if offset + length > len(data):
                raise ValueError(f'{path}: string {i} runs past the end of the file')
            yield data[offset:offset + length]

    try:
        raw = list(zip(strings(ids_at), strings(strs_at), strict=True))
    except struct.error as err:
        raise ValueError(f'{path}: truncated .mo catalog: {err}') from err
    charset = 'utf-8'
    for msgid, msgstr in raw:
        if msgid == b'':
            charset = _header_charset(msgstr) or charset
    try:
        return [(msgid.split(b'\0')[0].decode(charset), msgstr.split(b'\0')[0].decode(charset))
                for msgid, msgstr in raw]
    except (LookupError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot decode as {charset}: {err}') from err


def _header_charset(header: bytes) -> str | None:
    found = re.search(rb'charset=([\w.-]+)', header)
    if found and found.group(1).decode('ascii').upper() != 'CHARSET':
        return found.group(1).decode('ascii')
    return None


_PO_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', '"': '"', '\\': '\\', 'a': '\a', 'b': '\b',
               'f': '\f', 'v': '\v'}
_PO_KEYWORD_RE = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+"(.*)"\s*$')


def _po_unescape(text):
    return re.sub(r'\\(.)', lambda m: _PO_ESCAPES.get(m.group(1), m.group(1)), text)


def read_po(path) -> list[tuple[str, str]]:
    r"""Return the (msgid, msgstr) pairs of a gettext source catalog, header included.

    Like ``read_mo``: context as ``ctxt\x04msgid``, plural entries as their
    singular forms. Entries flagged fuzzy (a guess that no translator
    confirmed) come back untranslated; obsolete ``#~`` entries are skipped.
    """
    path = Path(path)
    data = path.read_bytes()
    header = re.search(rb'msgid ""\s*\nmsgstr ""\s*\n((?:\s*".*"\s*\n)*)', data)
    charset = (_header_charset(header.group(1)) if header else None) or 'utf-8'
    try:
        lines = _lines(data.decode(charset))
    except (LookupError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot decode as {charset}: {err}') from err

    entries = []
    entry, last, fuzzy = {}, None, False

    def flush():
        nonlocal entry, last, fuzzy
        if 'msgid' in entry:
            msgid = entry['msgid']
            if 'msgctxt' in entry:
                msgid = entry['msgctxt'] + '\x04' + msgid
            msgstr = entry.get('msgstr', entry.get('msgstr[0]', ''))
            entries.append((msgid, '' if fuzzy and msgid else msgstr))
        entry, last, fuzzy = {}, None, False

    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            flush()
        elif line.startswith('#'):
            if 'msgid' in entry:
                flush()   # a comment starts the next entry
            if line.startswith('#,') and 'fuzzy' in line:
                fuzzy = True
        elif line.startswith('"') and line.endswith('"') and last is not None:
            entry[last] += _po_unescape(line[1:-1])
        else:
            match = _PO_KEYWORD_RE.match(line)
            if match is None:
                raise ValueError(f'{path}:{number}: not a .po line: {line[:60]!r}')
            keyword = match.group(1)
            if keyword in ('msgctxt', 'msgid') and 'msgid' in entry:
                flush()
            entry[keyword] = _po_unescape(match.group(3))
            last = keyword
    flush()
    return entries


QM_MAGIC = bytes((0x3C, 0xB8, 0x64, 0x18, 0xCA, 0xEF, 0x9C, 0x95,
                  0xCD, 0x21, 0x1C, 0xBF, 0x60, 0xA1, 0xBD, 0xDD))
_QM_MESSAGES = 0x69
_QM_END, _QM_SOURCE16, _QM_TRANSLATION, _QM_CONTEXT16, _QM_OBSOLETE1 = 1, 2, 3, 4, 5
_QM_SOURCE, _QM_CONTEXT, _QM_COMMENT = 6, 7, 8


def read_qm(path) -> list[tuple[str, str]]:
    """Return the (source text, translation) pairs of a compiled Qt catalog.

    A message whose source text the catalog does not store (``lrelease``
    can strip them) cannot be paired and is left out; numerus forms give
    their first translation.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(QM_MAGIC):
        raise ValueError(f'{path}: not a .qm catalog (bad magic number)')
    messages, at = b'', len(QM_MAGIC)
    while at + 5 <= len(data):
        tag, length = data[at], struct.unpack_from('>I', data, at + 1)[0]
        if tag == _QM_MESSAGES:
            messages = data[at + 5:at + 5 + length]
        at += 5 + length

    entries, source, translation, at = [], None, None, 0
    try:
        while at < len(messages):
            tag = messages[at]
            at += 1
            if tag == _QM_END:
                if source is not None and translation is not None:
                    entries.append((source, translation))
                source = translation = None
                continue
            if tag == _QM_OBSOLETE1:
                at += 4
                continue
            if tag not in (_QM_TRANSLATION, _QM_SOURCE16, _QM_CONTEXT16, _QM_SOURCE,
                           _QM_CONTEXT, _QM_COMMENT):
                raise ValueError(f'unknown message tag {tag} at byte {at - 1}')
            length = struct.unpack_from('>I', messages, at)[0]
            at += 4
            if tag == _QM_TRANSLATION:
                if length == 0xFFFFFFFF:
                    continue   # a null translation
                if translation is None:
                    translation = messages[at:at + length].decode('utf-16-be')
            elif tag == _QM_SOURCE:
                source = messages[at:at + length].decode('utf-8')
            elif tag == _QM_SOURCE16:
                source = messages[at:at + length].decode('utf-16-be')
            at += length
    except (struct.error, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f'{path}: broken .qm message table: {err}') from err
    return entries


def read_parallel(files: ParallelFiles) -> list[tuple[str, str]]:
    """Aligned lines of two plain-text files."""
    sides = []
    for path in (files.source, files.target):
        try:
            sides.append(_lines(Path(path).read_text(encoding='utf-8')))
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f'cannot read parallel text file {path}: {err}') from err
    if len(sides[0]) != len(sides[1]):
        raise ValueError(f'{files.source} has {len(sides[0])} lines but {files.target} has '
                         f'{len(sides[1])}: parallel files must be aligned line by line')
    return list(zip(*sides, strict=True))


def _lines(text: str) -> list[str]:
    """Lines ended by a newline only.

    ``str.splitlines`` also splits at U+0085 and U+2028, which can sit inside
    a catalog string or a sentence.
    """
    lines = text.replace('\r\n', '\n').split('\n')
    return lines[:-1] if lines and lines[-1] == '' else lines


def is_catalog_path(path) -> bool:
    """Whether a path (inside a package) names a German catalog."""
    return CATALOG_RE.search(str(PurePosixPath(path))) is not None


def find_catalogs(tree) -> list[Path]:
    """German catalogs under an extracted package tree, in path order."""
    tree = Path(tree)
    return sorted(p for p in tree.rglob('*')
                  if p.is_file() and is_catalog_path('/' + p.relative_to(tree).as_posix()))
