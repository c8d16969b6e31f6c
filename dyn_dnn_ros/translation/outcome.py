"""What a translation gives back, however it was computed: outcomes, scores, splits.

Shared by both engines (``engines/``), the command line and the benchmarks,
so it imports neither torch nor CTranslate2.
"""

from dataclasses import dataclass, field
import math
from pathlib import Path

import yaml

from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.validation import require_int

STATUSES = ('ok', 'truncated', 'empty')
SPLITS = ('train', 'valid', 'test', 'test_incatalog')


def pooled_width(items) -> float:
    """Average width over all steps of all sentences (items with ``width_sum/width_steps``)."""
    steps = sum(item.width_steps for item in items)
    return sum(item.width_sum for item in items) / steps if steps else 1.0


def encode_texts(tokenizer, texts, max_source_tokens):
    """Source ids and status per text: cut after ``max_source_tokens`` tokens if longer."""
    encoded = []
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f'texts: expected strings, got {type(text).__name__}')
        ids = tokenizer.encode(text)
        if not ids:
            encoded.append(([], 'empty'))
        elif len(ids) > max_source_tokens:
            encoded.append((ids[:max_source_tokens], 'truncated'))
        else:
            encoded.append((ids, 'ok'))
    return encoded


@dataclass
class TranslationOutcome:
    """One translated sentence and what it cost."""

    text: str
    status: str  # 'ok', 'truncated' (source cut to max_source_tokens) or 'empty'
    avg_width: float  # mean active beams per decoding step; 0 for empty input
    decoder_layers: int
    source_tokens: int  # tokens actually translated (after truncation), EOS excluded
    latency_s: float  # wall time of the batch that carried this sentence
    tokens: list[int] = field(default_factory=list)  # target ids, no BOS/EOS
    log_prob: float = 0.0  # model log-probability of tokens + EOS
    steps: int = 0
    width_sum: int = 0
    width_steps: int = 0
    cut: bool = False  # decoding stopped at the deadline (see beam_search)


@dataclass
class Evaluation:
    bleu: float  # sacrebleu corpus BLEU, detokenized, case-sensitive
    avg_width: float  # pooled over all decoding steps of all sentences
    perplexity: float  # exp(-mean log-prob per target token, EOS included) of the outputs
    seconds: float  # translation wall time (tokenization and detokenization included)
    sentences: int
    hypotheses: list[str]
    decoder_steps: int = 0  # summed over sentences; at batch 1, near-constant cost per step


def corpus_scores(outcomes, references) -> tuple[float, float, float]:
    """``(BLEU, average width, perplexity)`` of translation outcomes against references.

    Corpus BLEU over all sentences (sacrebleu defaults: 13a tokenization,
    case-sensitive); width pooled over every decoding step; perplexity per
    target token, EOS included. Empty inputs were never decoded, so they count
    for BLEU only.
    """
    import sacrebleu
    if len(outcomes) != len(references) or not outcomes:
        raise ValueError(f'outcomes/references: need equally many and at least one, got '
                         f'{len(outcomes)} and {len(references)}')
    done = [o for o in outcomes if o.status != 'empty']
    tokens = sum(len(o.tokens) + 1 for o in done)
    perplexity = math.exp(-sum(o.log_prob for o in done) / tokens) if tokens else math.nan
    bleu = sacrebleu.corpus_bleu([o.text for o in outcomes], [list(references)]).score
    return bleu, pooled_width(done), perplexity


def read_split(corpus_dir, split, limit=None):
    """Source (English) and reference (German) lines of one corpus split."""
    if split not in SPLITS:
        raise ValueError(f'split: must be one of {SPLITS}, got {split!r}')
    require_int('limit', limit, 1, none_allowed=True)
    texts = []
    for lang in ('en', 'de'):
        path = Path(corpus_dir) / f'{split}.{lang}'
        try:
            texts.append(path.read_text(encoding='utf-8').splitlines())
        except OSError as err:
            raise ValueError(f'{path}: cannot read corpus split ({err.strerror})') from None
    sources, references = texts
    if len(sources) != len(references):
        raise ValueError(f'{Path(corpus_dir) / split}.en has {len(sources)} lines but .de has '
                         f'{len(references)}')
    return sources[:limit], references[:limit]


def subnet_from_spec(spec, space) -> SubnetConfig:
    """The sub-network a spec names, validated against ``space``.

    A spec is ``'largest'``, ``'smallest'``, a YAML file (a sub-network, or a
    mapping with one under ``subnet:``), a dict or a ``SubnetConfig``.
    """
    if isinstance(spec, SubnetConfig):
        return space.validate(spec)
    if spec == 'largest':
        return space.largest()
    if spec == 'smallest':
        return space.smallest()
    where = 'subnet'
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        try:
            spec = yaml.safe_load(path.read_text(encoding='utf-8'))
        except OSError as err:
            raise ValueError(f"subnet: {path} is not 'largest', 'smallest' or a readable "
                             f'YAML file ({err.strerror})') from None
        except yaml.YAMLError as err:
            raise ValueError(f'subnet: {path}: malformed YAML ({err})') from None
        where = str(path)
    if isinstance(spec, dict) and isinstance(spec.get('subnet'), dict):
        spec = spec['subnet']
    try:
        return space.validate(SubnetConfig.from_dict(spec))
    except (TypeError, ValueError) as err:
        raise ValueError(f'{where}: {err}') from None
