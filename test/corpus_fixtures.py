"""Small gettext catalogs and extracted packages made on the spot, for the corpus tests."""

import struct

HEADER = 'Content-Type: text/plain; charset={}\n'


def write_mo(path, entries, charset='UTF-8'):
    """Write a little-endian gettext catalog; ``entries`` maps msgid -> msgstr."""
    entries = {'': HEADER.format(charset), **entries}
    keys = sorted(entries)
    ids = [k.encode(charset) for k in keys]
    strs = [entries[k].encode(charset) for k in keys]
    count = len(keys)
    ids_at, strs_at = 28, 28 + 8 * count
    data_at = strs_at + 8 * count
    table, blob = [], b''
    for item in ids + strs:
        table.append((len(item), data_at + len(blob)))
        blob += item + b'\0'
    header = struct.pack('<7I', 0x950412de, 0, count, ids_at, strs_at, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b''.join(struct.pack('<2I', *t) for t in table) + blob)


def fake_package(cache_dir, name, catalogs, copyright_text=None):
    """An already-extracted package in the cache, so build_corpus needs no network."""
    tree = cache_dir / 'extract' / name
    for catalog_name, entries in catalogs.items():
        write_mo(tree / 'usr/share/locale/de/LC_MESSAGES' / f'{catalog_name}.mo', entries)
    if copyright_text is not None:
        (tree / 'usr/share/doc' / name).mkdir(parents=True, exist_ok=True)
        (tree / 'usr/share/doc' / name / 'copyright').write_text(copyright_text,
                                                                  encoding='utf-8')
    return tree


def read_split(out_dir, split):
    en = (out_dir / f'{split}.en').read_text(encoding='utf-8').splitlines()
    de = (out_dir / f'{split}.de').read_text(encoding='utf-8').splitlines()
    assert len(en) == len(de)
    return list(zip(en, de, strict=True))
