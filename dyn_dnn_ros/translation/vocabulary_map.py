"""Vocabulary map: which target tokens a sentence's source tokens can plausibly need.

A small decoder spends most of each step on the output layer: scoring all
8,000 target tokens, softmax and top-k. CTranslate2 can score a shortlist
instead (``use_vmap``): per batch it takes the union of the candidates its
vocabulary map lists for the source tokens, plus tokens listed for every
sentence. This module builds such a map from the parallel training corpus:

* always: the target tokens found in the most training sentences;
* per source token: the target tokens that co-occur with it in a sentence
  pair far more often than chance, ranked by local mutual information
  ``count(s, t) * log(count(s, t) * pairs / (count(s) * count(t)))``, which
  favours pairs that are both frequent and specific.

Sentences held out for measuring quality are never counted: a map built
from them would list exactly the words their references need, and BLEU on
them would credit the map with what it was shown. The caller names them
(``held_out``); a pair whose source or target is among them is skipped.

The map is a text file in CTranslate2's format, one line per source token:
``piece<TAB>target piece target piece ...``; the line with an empty key lists
the tokens always offered. It is tied to its tokenizer (pieces, not ids), so
a new tokenizer needs a new map. The design measures quality and latency with
the map in use; a library records the map's digest, and a worker refuses a
library measured with another map (``operating_points.py``).
"""

from dataclasses import dataclass
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dyn_dnn_ros.files import file_digest, write_atomic
from dyn_dnn_ros.translation.corpus import normalize_text
from dyn_dnn_ros.validation import require_int

FILE_NAME = 'vocabulary_map.txt'   # beside the tokenizer it belongs to
CTRANSLATE2_FILE = 'vmap.txt'      # the name CTranslate2 looks for in a model folder
FULL = 'full'                      # no map: every step scores the whole vocabulary


@dataclass(frozen=True)
class VocabularyMapConfig:
    """How many candidates the map lists; every field checked on creation."""

    always: int = 200       # target tokens offered to every sentence
    per_source: int = 24    # candidates listed per source token
    max_pairs: int | None = None   # training pairs counted; None = all

    def __post_init__(self):
        require_int('always', self.always, 0)
        require_int('per_source', self.per_source, 1)
        require_int('max_pairs', self.max_pairs, 1, none_allowed=True)


class CoOccurrence:
    """Sentence counts of source tokens, target tokens and (source, target) pairs."""

    def __init__(self, vocab_size):
        self.pairs = 0
        self.source = np.zeros(vocab_size, np.float64)
        self.target = np.zeros(vocab_size, np.float64)
        self.joint = np.zeros((vocab_size, vocab_size), np.float32)

    def add(self, source_ids, target_ids):
        """Count one sentence pair (each token once per sentence)."""
        source, target = np.unique(source_ids), np.unique(target_ids)
        self.pairs += 1
        self.source[source] += 1
        self.target[target] += 1
        self.joint[np.ix_(source, target)] += 1

    def candidates(self, source_id, count):
        """Up to ``count`` target ids for ``source_id``: positive LMI, best first."""
        joint = self.joint[source_id].astype(np.float64)
        seen = joint > 0
        if not seen.any():
            return []
        expected = self.source[source_id] * self.target / self.pairs
        lmi = np.full(joint.shape, -math.inf)
        lmi[seen] = joint[seen] * np.log(joint[seen] / expected[seen])
        best = np.argsort(-lmi, kind='stable')[:count]
        return [int(t) for t in best if lmi[t] > 0]

    def frequent_targets(self, count):
        """The ``count`` target ids found in the most sentences."""
        order = np.argsort(-self.target, kind='stable')[:count]
        return [int(t) for t in order if self.target[t] > 0]


def build_vocabulary_map(tokenizer, sources, targets, config=VocabularyMapConfig(),
                         held_out=(), progress=True):
    """The map's lines (CTranslate2's format) from parallel ``sources``/``targets`` texts.

    ``held_out``: texts (either language) whose pairs are not counted.
    """
    if len(sources) != len(targets) or not sources:
        raise ValueError(f'sources/targets: need equally many and at least one, got '
                         f'{len(sources)} and {len(targets)}')
    held_out = {normalize_text(text) for text in held_out}
    if held_out:
        kept = [(s, t) for s, t in zip(sources, targets, strict=True)
                if normalize_text(s) not in held_out and normalize_text(t) not in held_out]
        if not kept:
            raise ValueError('sources/targets: every pair is held out')
        sources, targets = (list(side) for side in zip(*kept, strict=True))
    total = min(config.max_pairs or len(sources), len(sources))
    counts = CoOccurrence(tokenizer.vocab_size)
    chunk = 4096   # SentencePiece encodes a batch much faster than one text at a time
    with tqdm(total=total, desc='counting pairs', unit='pair', disable=not progress) as bar:
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            for source_ids, target_ids in zip(tokenizer.encode_batch(sources[start:stop]),
                                              tokenizer.encode_batch(targets[start:stop]),
                                              strict=True):
                if source_ids and target_ids:
                    counts.add(source_ids, target_ids)
            bar.update(stop - start)
    if counts.pairs == 0:
        raise ValueError('sources/targets: no pair has text on both sides')
    specials = {tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id}
    piece = tokenizer.id_to_piece
    lines = ['\t' + ' '.join(piece(t) for t in counts.frequent_targets(config.always)
                             if t not in specials)]
    for source_id in range(tokenizer.vocab_size):
        if source_id in specials or counts.source[source_id] == 0:
            continue
        listed = [t for t in counts.candidates(source_id, config.per_source) if t not in specials]
        if listed:
            lines.append(piece(source_id) + '\t' + ' '.join(piece(t) for t in listed))
    return lines


def write_vocabulary_map(lines, path) -> str:
    """Write the map atomically; its SHA-256 (what a library records)."""
    write_atomic(path, ('\n'.join(lines) + '\n').encode('utf-8'))
    return file_digest(path)


def engine_vocabulary_map(library, path=''):
    """The engine's ``vocabulary_map`` that runs ``library`` as it was measured.

    ``path``: the map file to use ('' = the shipped one) when the library was
    measured with a map; a library measured scoring the whole vocabulary
    gives ``FULL``. The engine's digest is still checked against the library's
    (``OperatingPointLibrary.check_vocabulary_map``).
    """
    return str(path or '') if library.vocabulary_map_sha256 else FULL


def shortlist(entries, source_pieces) -> set:
    """The target pieces a sentence may use: ``entries['']`` plus its source pieces' lists.

    ``entries`` as ``read_vocabulary_map`` gives them; this is the set
    CTranslate2 scores for one sentence (for a batch, the union over it),
    besides the unknown, start and end tokens it always adds.
    """
    allowed = set(entries.get('', ()))
    for piece in source_pieces:
        allowed.update(entries.get(piece, ()))
    return allowed


def read_vocabulary_map(path, vocabulary) -> dict:
    """``{source piece: [target pieces]}`` of the map at ``path``, checked against ``vocabulary``.

    The key ``''`` holds the tokens always offered. A piece not in the
    tokenizer's ``vocabulary`` means the map was built for another tokenizer.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as error:
        raise ValueError(f'{path}: cannot read vocabulary map ({error.strerror})') from None
    known = set(vocabulary)
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        key, tab, listed = line.partition('\t')
        if not tab:
            raise ValueError(f'{path}:{number}: expected "source<TAB>targets", got {line!r}')
        pieces = listed.split()
        unknown = [p for p in [key, *pieces] if p and p not in known]
        if unknown:
            raise ValueError(f'{path}:{number}: {unknown[0]!r} is not a token of the '
                             'tokenizer: the map was built for another one')
        entries[key] = pieces
    if not entries:
        raise ValueError(f'{path}: the vocabulary map is empty')
    return entries
