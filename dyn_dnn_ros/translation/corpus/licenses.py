"""License names of Debian packages, from their copyright files (DEP-5 or free text)."""

from pathlib import Path
import re

from dyn_dnn_ros.translation.corpus.config import _base_name

# Free-text copyright files: the license names they mention, most specific first.
_LICENSE_HINTS = (
    ('LGPL', re.compile(r'GNU (?:Lesser|Library) General Public|\bLGPL', re.IGNORECASE)),
    ('GPL', re.compile(r'GNU General Public|\bGPL', re.IGNORECASE)),
    ('Apache', re.compile(r'Apache License', re.IGNORECASE)),
    ('MPL', re.compile(r'Mozilla Public License', re.IGNORECASE)),
    ('Artistic', re.compile(r'Artistic License', re.IGNORECASE)),
    ('BSD', re.compile(r'\bBSD\b|Redistributions of source code must retain')),
    ('Expat', re.compile(r'Permission is hereby granted, free of charge|\bMIT\b')),
    ('ISC', re.compile(r'Permission to use, copy, modify, and(?:/or)? distribute this software '
                       r'for any purpose')),
    ('Zlib', re.compile(r'Permission is granted to anyone to use this software for any purpose')),
    ('unlimited distribution', re.compile(r'unlimited (?:use and )?distribution', re.IGNORECASE)),
    ('CC-BY-SA', re.compile(r'Creative Commons', re.IGNORECASE)),
    ('public-domain', re.compile(r'public domain', re.IGNORECASE)),
)


def license_summary(copyright_text: str) -> str:
    """The license names of a Debian copyright file, the main files' first.

    Machine-readable files (DEP-5) give their ``License:`` short names; free
    text gives the names it mentions, marked '(free text)'. 'unknown' when
    neither says.
    """
    if re.match(r'\s*Format:.*(?:dep5|copyright-format)', copyright_text, re.IGNORECASE):
        names = []
        for paragraph in re.split(r'\n\s*\n', copyright_text):
            found = re.search(r'^License:[ \t]*(\S.*)$', paragraph, re.MULTILINE)
            if not found or not re.search(r'^Files:', paragraph, re.MULTILINE):
                continue
            name = found.group(1).strip()
            if re.search(r'^Files:\s*\*\s*$', paragraph, re.MULTILINE):
                names.insert(0, name)
            else:
                names.append(name)
        names = list(dict.fromkeys(names))
        if names:
            return ', '.join(names[:4]) + (', and others' if len(names) > 4 else '')
    copyright_text = ' '.join(copyright_text.split())   # phrases wrap across lines
    # "GPL" inside "LGPL" or "Lesser General Public" is not the GPL.
    without_lgpl = _LICENSE_HINTS[0][1].sub(' ', copyright_text)
    names = [name for name, pattern in _LICENSE_HINTS
             if pattern.search(without_lgpl if name == 'GPL' else copyright_text)]
    return ', '.join(names) + ' (free text)' if names else 'unknown'


def package_license(tree, package: str) -> str:
    """License summary of an extracted or installed package, from its copyright file."""
    doc_dir = Path(tree) / 'usr/share/doc' / _base_name(package)
    try:
        return license_summary((doc_dir / 'copyright').read_text(encoding='utf-8',
                                                                  errors='replace'))
    except OSError:
        if doc_dir.is_symlink():
            return f'unknown (its copyright file is in {doc_dir.readlink().name})'
        return 'unknown'
