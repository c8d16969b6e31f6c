"""Translation engines: what runs a sub-network's beam search.

Two engines share one interface (``translate`` text in, ``TranslationOutcome``
out, for any sub-network the engine can run):

* ``torch`` slices the SuperTransformer's weights in place: any sub-network,
  CPU or CUDA, dynamic beam width, decoding stopped exactly at a deadline.
* ``ctranslate2`` runs compact models exported from the same weights
  (``ctranslate2_export.py``), int8 on CPU by default: several times faster per
  sentence and a fraction of the memory, for the sub-networks CTranslate2 can
  express (each decoder layer attends to the last encoder layer), with fixed
  beam widths, and a deadline kept by limiting the decoding length. By default
  it scores a shortlist of target tokens per sentence, from the shipped
  vocabulary map (``vocabulary_map.py``), instead of the whole vocabulary.

``create_engine`` imports only the engine asked for, so a process running
CTranslate2 never imports torch.
"""

from dataclasses import dataclass
from pathlib import Path

from dyn_dnn_ros.validation import require_int

ENGINES = ('torch', 'ctranslate2')
DEFAULT_COMPUTE_TYPE = {'torch': 'float32', 'ctranslate2': 'int8'}
COMPUTE_TYPES = {'torch': ('float32',),
                 'ctranslate2': ('int8', 'int8_float32', 'float32', 'int16', 'float16',
                                 'int8_float16', 'bfloat16', 'int8_bfloat16')}


@dataclass(frozen=True)
class EngineConfig:
    """Which engine, on what, from which files; every field checked on creation."""

    engine: str = 'ctranslate2'
    device: str = 'cpu'
    compute_type: str = ''  # '' = the engine's default (int8 for ctranslate2)
    model_path: Path | None = None  # SuperTransformer weights; None = shipped
    spm_path: Path | None = None  # SentencePiece model; None = shipped
    cache_dir: Path | None = None  # ctranslate2 models; None = the user's cache folder
    heads: str = 'pad'  # ctranslate2: zero-pad narrower attentions ('pad') or refuse
    # ctranslate2: '' = the shipped vocabulary map, 'full' = score the whole
    # vocabulary, else a map file; the torch engine always scores it whole.
    vocabulary_map: str = ''
    batch_size: int = 8
    alpha: float = 1.0
    max_len_a: float = 1.5
    max_len_b: float = 10

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f'engine: must be one of {ENGINES}, got {self.engine!r}')
        if self.device not in ('cpu', 'cuda'):
            raise ValueError(f"device: must be 'cpu' or 'cuda', got {self.device!r}")
        compute = self.compute_type or DEFAULT_COMPUTE_TYPE[self.engine]
        if compute not in COMPUTE_TYPES[self.engine]:
            raise ValueError(f'compute_type: the {self.engine} engine computes in one of '
                             f'{COMPUTE_TYPES[self.engine]}, got {compute!r}')
        object.__setattr__(self, 'compute_type', compute)
        require_int('batch_size', self.batch_size, 1)
        object.__setattr__(self, 'vocabulary_map', self._vocabulary_map())
        for name in ('model_path', 'spm_path', 'cache_dir'):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def _vocabulary_map(self):
        from dyn_dnn_ros.translation.vocabulary_map import FULL
        value = str(self.vocabulary_map or '')
        if self.engine == 'torch':
            if value not in ('', FULL):
                raise ValueError('vocabulary_map: the torch engine scores the whole vocabulary; '
                                 f'a vocabulary map is for the ctranslate2 engine, got {value!r}')
            return FULL
        if value:
            return value
        from dyn_dnn_ros.translation.model_file import default_vocabulary_map_path
        return str(default_vocabulary_map_path())

    @property
    def vocabulary_map_path(self):
        """The map file in use, or None when the whole vocabulary is scored."""
        from dyn_dnn_ros.translation.vocabulary_map import FULL
        return None if self.vocabulary_map == FULL else Path(self.vocabulary_map)


def create_engine(config: EngineConfig):
    """The engine ``config`` names, loaded (only that engine's libraries are imported)."""
    if config.engine == 'torch':
        from dyn_dnn_ros.translation.engines.torch_engine import TorchEngine
        return TorchEngine(config)
    from dyn_dnn_ros.translation.engines.ctranslate2_engine import CTranslate2Engine
    return CTranslate2Engine(config)


def create_library_engine(library, vocabulary_map='', where='library', **fields):
    """The engine ``library``'s points were measured on, to run them as measured.

    Its engine and compute type, and for CTranslate2 its vocabulary map
    (``vocabulary_map``: that map's file, '' = the shipped one); ``fields``
    are the rest of ``EngineConfig``. A map other than the one the library
    records is refused, naming both (``where`` names the library).
    """
    from dyn_dnn_ros.translation.vocabulary_map import engine_vocabulary_map
    engine = create_engine(EngineConfig(
        engine=library.engine, compute_type=library.compute_type,
        vocabulary_map=engine_vocabulary_map(library, vocabulary_map), **fields))
    library.check_vocabulary_map(engine.vocabulary_map_sha256, where)
    return engine


def evaluate(engine, sources, references, subnet=None, beam=None, threads=None,
             progress=False, patience=1.0):
    """Corpus BLEU and costs of ``engine`` translating ``sources`` (``outcome.Evaluation``)."""
    import time

    from dyn_dnn_ros.translation.outcome import Evaluation, corpus_scores
    if len(sources) != len(references) or not sources:
        raise ValueError(f'sources/references: need equally many and at least one, got '
                         f'{len(sources)} and {len(references)}')
    began = time.perf_counter()
    outcomes = engine.translate(sources, subnet, beam, threads=threads, progress=progress,
                                patience=patience)
    seconds = time.perf_counter() - began
    bleu, avg_width, perplexity = corpus_scores(outcomes, references)
    return Evaluation(bleu=bleu, avg_width=avg_width, perplexity=perplexity, seconds=seconds,
                      sentences=len(sources), hypotheses=[o.text for o in outcomes],
                      decoder_steps=sum(o.steps for o in outcomes))
