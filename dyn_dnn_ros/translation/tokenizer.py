"""Joint English/German SentencePiece BPE tokenizer: training and the ``Tokenizer`` wrapper.

One vocabulary serves both languages so the Transformer can share (tie) its
embeddings. Ids 0..3 are fixed: pad=0, unk=1, bos=2, eos=3. Text is put in
Unicode NFC with single spaces before encoding, exactly as the corpus builder
does, and SentencePiece's own normalisation is off (``identity``) so that
``decode(encode(text))`` gives back the text rather than an NFKC variant of it.
The common printf/LibreOffice/Python placeholders of the training data are
user-defined symbols: each is one token and always comes back unchanged.
"""

from collections import Counter
from dataclasses import dataclass
import os
from pathlib import Path
import shutil

import sentencepiece as spm

from dyn_dnn_ros.share import data_path, model_path
from dyn_dnn_ros.translation.corpus import normalize_text, placeholders
from dyn_dnn_ros.validation import require_in_interval, require_int

DEFAULT_CORPUS_DIR = data_path('corpus')
DEFAULT_MODEL_PATH = model_path('translation', 'spm.model')
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
# Always single tokens, whether or not the training data has them often.
BASE_PLACEHOLDERS = ('%s', '%d', '%u', '%i', '%%', '%1$s', '%2$s', '%1', '%2', '{0}', '{1}', '{}')


class Tokenizer:
    """A trained SentencePiece model; unknown characters become ``unk_id``, never an error."""

    def __init__(self, model_path=DEFAULT_MODEL_PATH):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ValueError(f'tokenizer model {self.model_path} does not exist '
                             '(train one with `dyn-dnn-ros tokenizer`)')
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(self.model_path))
        except (OSError, RuntimeError) as err:
            raise ValueError(f'tokenizer model {self.model_path} is not a SentencePiece '
                             f'model: {err}') from err
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if min(ids) < 0:
            raise ValueError(f'tokenizer model {self.model_path} lacks pad/unk/bos/eos ids '
                             f'(got {ids}); train it with `dyn-dnn-ros tokenizer`')
        self._specials = {self.pad_id, self.bos_id, self.eos_id}

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without bos/eos; empty or blank text gives ``[]``."""
        text = normalize_text(text)
        return self._sp.encode(text, out_type=int) if text else []

    def encode_batch(self, texts) -> list[list[int]]:
        texts = [normalize_text(text) for text in texts]
        encoded = self._sp.encode(texts, out_type=int) if texts else []
        return [ids if text else [] for ids, text in zip(encoded, texts, strict=True)]

    def decode(self, ids) -> str:
        """Text of ``ids``; pad, bos and eos are dropped wherever they are."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f'token id {i} is outside the vocabulary '
                                 f'(0..{self.vocab_size - 1})')
        return self._sp.decode([i for i in ids if i not in self._specials])

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))

    def pieces(self) -> list[str]:
        """Every token's string, by id: the vocabulary an exported model is given."""
        return [self._sp.id_to_piece(i) for i in range(self.vocab_size)]

    def piece_to_id(self, piece: str) -> int:
        return self._sp.piece_to_id(piece)


@dataclass(frozen=True)
class TokenizerConfig:
    corpus_dir: Path = DEFAULT_CORPUS_DIR
    model_path: Path = DEFAULT_MODEL_PATH
    vocab_size: int = 8000
    character_coverage: float = 0.9999
    # A placeholder seen this often in the training split becomes a user-defined symbol.
    placeholder_min_count: int = 10
    num_threads: int = 2

    def __post_init__(self):
        object.__setattr__(self, 'corpus_dir', Path(self.corpus_dir))
        object.__setattr__(self, 'model_path', Path(self.model_path))
        if self.model_path.suffix != '.model':
            raise ValueError(f'model_path {self.model_path} must end in .model')
        require_int('vocab_size', self.vocab_size, 100)
        require_in_interval('character_coverage', self.character_coverage, '[0.9, 1]')
        require_int('placeholder_min_count', self.placeholder_min_count, 1)
        require_int('num_threads', self.num_threads, 1)


def training_files(corpus_dir) -> list[Path]:
    files = [Path(corpus_dir) / f'train.{lang}' for lang in ('en', 'de')]
    for path in files:
        if not path.is_file() or path.stat().st_size == 0:
            raise ValueError(f'training text {path} is missing or empty '
                             '(build the corpus with `dyn-dnn-ros corpus`)')
    return files


def placeholder_symbols(files, min_count: int) -> list[str]:
    """Base placeholders plus those seen at least ``min_count`` times, most frequent first."""
    counts = Counter()
    for path in files:
        with open(path, encoding='utf-8') as lines:
            for line in lines:
                counts.update(placeholders(line))
    frequent = sorted((p for p, n in counts.items() if n >= min_count),
                      key=lambda p: (-counts[p], p))
    return list(dict.fromkeys([*BASE_PLACEHOLDERS, *frequent]))


def train_tokenizer(config: TokenizerConfig) -> Path:
    """Train the joint BPE model on both sides of the training split; return its path."""
    files = training_files(config.corpus_dir)
    symbols = placeholder_symbols(files, config.placeholder_min_count)
    config.model_path.parent.mkdir(parents=True, exist_ok=True)
    # A fixed work folder, not a random one: the model stores its prefix, and the
    # same data should give a byte-identical model.
    work = config.model_path.parent / '.spm-training'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        prefix = work / config.model_path.stem
        spm.SentencePieceTrainer.Train(
            input=[str(f) for f in files], model_prefix=str(prefix), model_type='bpe',
            vocab_size=config.vocab_size, character_coverage=config.character_coverage,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            user_defined_symbols=symbols, normalization_rule_name='identity',
            num_threads=config.num_threads, minloglevel=2)
        # Replace both files only once training succeeded.
        for suffix in ('.vocab', '.model'):
            os.replace(prefix.with_suffix(suffix), config.model_path.with_suffix(suffix))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return config.model_path


def tokenizer_stats(tokenizer: Tokenizer, corpus_dir, split: str = 'test') -> dict:
    """Tokens per sentence and unk rate of each side of one split."""
    stats = {'vocab_size': tokenizer.vocab_size}
    for lang in ('en', 'de'):
        path = Path(corpus_dir) / f'{split}.{lang}'
        try:
            lines = path.read_text(encoding='utf-8').splitlines()
        except OSError as err:
            raise ValueError(f'cannot read {path}: {err}') from err
        encoded = tokenizer.encode_batch(lines)
        tokens = sum(len(ids) for ids in encoded)
        unknown = sum(ids.count(tokenizer.unk_id) for ids in encoded)
        stats[lang] = {
            'sentences': len(lines),
            'tokens_per_sentence': tokens / max(len(lines), 1),
            'unk_rate': unknown / max(tokens, 1),
        }
    return stats
