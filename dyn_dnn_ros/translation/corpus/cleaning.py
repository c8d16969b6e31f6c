r"""Cleaning pairs, the key that compares sources across splits, and the hash split.

Cleaning rules, in order (a dropped entry is counted under the reason in brackets;
``build`` applies the last two):
    * the catalog header (empty msgid) is skipped [header]; untranslated entries and
      ``.po`` entries marked fuzzy [untranslated];
    * msgctxt (``ctxt\x04msgid``) is dropped; plural entries keep the singular form only;
    * catalog strings lose one keyboard accelerator marker (``_File``, ``~File``, ``&File``,
      ``Sa_ve``): the marker is removed only when the string holds exactly one marker
      followed by a letter, outside placeholders, not an ``&entity;`` and not inside an
      upper-case identifier (``LC_ALL``), since a string with several is more likely
      code (``backup_manifest.tmp``) than a label with a mnemonic;
    * Unicode NFC, newlines/tabs/runs of spaces become one space;
    * both sides need min_words..max_words words [too_short, too_long];
    * source == target [identical];
    * placeholders (``%s``, ``%1$s``, ``{0}``, ``$(VAR)``, ...) are kept verbatim, and a pair
      whose two sides hold different placeholders is dropped [placeholder_mismatch]
      (``%1$s`` counts as ``%s`` so that reordered German arguments stay);
    * within a split, repeated (source, target) pairs are kept once [duplicate]; a source
      with several targets keeps its most frequent target, ties broken by string order
      [ambiguous_source];
    * across splits, a normalized source (``source_key``) stays in one split only
      [held_out_overlap]; ``build`` says which.
"""

import hashlib
import re
import unicodedata

from dyn_dnn_ros.translation.corpus.config import CorpusConfig

# Placeholders, most specific first: LibreOffice's %PRODUCTNAME before printf's %E,
# printf's %1$s before Qt's %1. No space flag in printf: "50 % der" is not a placeholder.
PLACEHOLDER_RE = re.compile(
    r'%[A-Z]{2}[A-Z0-9_]*'
    r'|%\(\w+\)[-+#0]*\d*(?:\.\d+)?[diouxXeEfFgGcrs]'
    r'|%(?:\d+\$)?[-+#0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t|I64)?'
    r'[diouxXeEfFgGaAcspS%]'
    r'|%\d+'
    r'|\{\w*\}'
    r'|\$\(\w+\)|\$\{\w+\}'
)
_POSITIONAL_RE = re.compile(r'^%\d+\$')
_ACCELERATOR_RE = re.compile(r'[_~&](?=[^\W\d_])')
_ENTITY_RE = re.compile(r'&\w+;')
_WORD_RE = re.compile(r'[^\W_]+')


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER_RE.findall(text)


def strip_accelerator(text: str) -> str:
    """Remove the keyboard mnemonic marker if there is exactly one (see module doc)."""
    protected = [m.span() for m in PLACEHOLDER_RE.finditer(text)]

    def is_marker(i):
        before = text[i - 1] if i > 0 else ' '
        if any(start <= i < end for start, end in protected) or before == text[i]:
            return False
        if text[i] == '&':
            return not _ENTITY_RE.match(text, i)
        # JOB_SPEC, LC_ALL: an upper-case identifier, not a mnemonic.
        return not (text[i] == '_' and before.isupper() and text[i + 1].isupper())

    hits = [m.start() for m in _ACCELERATOR_RE.finditer(text) if is_marker(m.start())]
    if len(hits) != 1:
        return text
    return text[:hits[0]] + text[hits[0] + 1:]


def normalize_text(text: str) -> str:
    """NFC and single spaces: one sentence per line, one spelling per character."""
    return ' '.join(unicodedata.normalize('NFC', text).split())


def source_key(text: str) -> str:
    """The key under which near-identical sources count as one across splits.

    Lower case, words only (punctuation, ellipses and accelerator markers
    ignored), every placeholder alike: ``Open %s…``, ``open {0}`` and
    ``_Open %d`` share a key.
    """
    text = strip_accelerator(PLACEHOLDER_RE.sub(' 0 ', text))
    return ' '.join(_WORD_RE.findall(text.casefold()))


def clean_pair(source: str, target: str, config: CorpusConfig, catalog: bool = True):
    """Return the cleaned (source, target), or the drop reason as a string.

    ``catalog`` turns on the gettext-only rules (context, accelerators).
    """
    if catalog:
        if source.split('\x04')[-1] == '':
            return 'header'
        if target == '':
            return 'untranslated'
        source = strip_accelerator(source.split('\x04')[-1])
        target = strip_accelerator(target)
    source, target = normalize_text(source), normalize_text(target)
    for text in (source, target):
        words = len(text.split())
        if words < config.min_words:
            return 'too_short'
        if words > config.max_words:
            return 'too_long'
    if source == target:
        return 'identical'
    if _placeholder_key(source) != _placeholder_key(target):
        return 'placeholder_mismatch'
    return source, target


def _placeholder_key(text):
    return sorted(_POSITIONAL_RE.sub('%', p) for p in placeholders(text))


def split_of(key: str, valid_ratio: float, test_ratio: float,
             test_incatalog_ratio: float = 0.0) -> str:
    """The split of a training package's string, from a hash of its key alone."""
    digest = hashlib.sha1(key.encode('utf-8')).digest()
    u = int.from_bytes(digest[:8], 'big') / 2**64
    for split, ratio in (('test', test_ratio), ('valid', valid_ratio),
                         ('test_incatalog', test_incatalog_ratio)):
        if u < ratio:
            return split
        u -= ratio
    return 'train'
