"""The translation facade: text in, text out, with any sub-network and beam policy.

``Translator`` is what the command line, the benchmarks and the ROS node use.
It owns one SuperTransformer and its tokenizer; each call names the
sub-network and the beam policy, so switching between operating points costs
nothing but the call. Sentences are grouped by length into batches (less
padding, shorter tails) and handed back in input order.
"""

from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from dyn_dnn_ros.translation.batching import encode_sources
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.beam_search import BeamSearchConfig, beam_search
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.translation.model_file import (  # noqa: F401  (re-exported)
    MODEL_FILE,
    SPM_FILE,
    default_model_path,
    default_spm_path,
)
from dyn_dnn_ros.translation.outcome import (  # noqa: F401  (re-exported)
    SPLITS,
    STATUSES,
    Evaluation,
    TranslationOutcome,
    corpus_scores,
    encode_texts,
    read_split,
    subnet_from_spec,
)
from dyn_dnn_ros.validation import is_integer, require_int


class Translator:
    """Translate English text to German with a chosen sub-network and beam policy."""

    def __init__(self, model, tokenizer, device='cpu', max_source_tokens=None, batch_size=8,
                 alpha=1.0, max_len_a=1.5, max_len_b=10):
        for name in ('vocab_size', 'pad_id', 'bos_id', 'eos_id'):
            if getattr(model, name) != getattr(tokenizer, name):
                raise ValueError(f'tokenizer {name}={getattr(tokenizer, name)} does not match '
                                 f'the model ({getattr(model, name)})')
        longest = model.space.max_positions - 1  # one position is the EOS
        max_source_tokens = longest if max_source_tokens is None else max_source_tokens
        if not is_integer(max_source_tokens) or not 1 <= max_source_tokens <= longest:
            raise ValueError(f'max_source_tokens: must be an integer in 1..{longest} (the '
                             f'positions the model was trained on), got {max_source_tokens!r}')
        require_int('batch_size', batch_size, 1)
        # Validates alpha and the length limits once, with their names.
        self.search_defaults = BeamSearchConfig(alpha=alpha, max_len_a=max_len_a,
                                                max_len_b=max_len_b)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_source_tokens = max_source_tokens
        self.batch_size = batch_size

    @classmethod
    def load(cls, model_path=None, spm_path=None, device='cpu', **options):
        """The shipped model and tokenizer (``models/translation/``) unless paths are given."""
        from dyn_dnn_ros.translation.checkpoint import load_model
        from dyn_dnn_ros.translation.tokenizer import Tokenizer
        model_path = Path(model_path) if model_path is not None else default_model_path()
        spm_path = Path(spm_path) if spm_path is not None else default_spm_path()
        tokenizer = Tokenizer(spm_path)
        model = load_model(model_path, device=device)
        return cls(model, tokenizer, device=device, **options)

    @property
    def space(self):
        return self.model.space

    def subnet(self, spec) -> SubnetConfig:
        return subnet_from_spec(spec, self.space)

    def search_config(self, beam=None, patience=1.0, record_steps=False) -> BeamSearchConfig:
        d = self.search_defaults
        return BeamSearchConfig(beam=BeamPolicy() if beam is None else beam, alpha=d.alpha,
                                max_len_a=d.max_len_a, max_len_b=d.max_len_b,
                                patience=patience, record_steps=record_steps)

    def encode(self, texts):
        """Source ids and status per text: cut after ``max_source_tokens`` tokens if longer."""
        return encode_texts(self.tokenizer, texts, self.max_source_tokens)

    def translate(self, texts, subnet=None, beam: BeamPolicy | None = None, patience=1.0,
                  progress=False, deadline=None) -> list[TranslationOutcome]:
        """Translate ``texts`` (one sentence each) and return one outcome per text, in order.

        ``subnet``: a ``SubnetConfig`` or spec (see ``subnet_from_spec``); None
        keeps the active one. ``beam``: a ``BeamPolicy``; None is fixed width 5.
        Empty or blank text gives an empty translation with status 'empty'.
        Text longer than ``max_source_tokens`` tokens is cut at a token boundary
        after that many tokens, translated, and marked 'truncated'. Characters
        the tokenizer does not know become its unknown token. ``deadline`` (a
        ``time.monotonic()`` value): decoding stops in time to meet it and
        returns the best hypothesis found by then (``cut``).
        """
        if isinstance(texts, str):
            raise ValueError('texts: expected a list of strings, got one string')
        config = self.search_config(beam, patience)
        if subnet is not None:
            self.model.set_subnet(self.subnet(subnet))
        layers = self.model.subnet.decoder_layers
        encoded = self.encode(texts)
        outcomes = [None] * len(encoded)
        for i, (_, status) in enumerate(encoded):
            if status == 'empty':
                outcomes[i] = TranslationOutcome('', 'empty', 0.0, layers, 0, 0.0)
        todo = [i for i, (ids, _) in enumerate(encoded) if ids]
        for chunk, results, seconds in self._run(
                [encoded[i][0] for i in todo], config, progress, deadline):
            for j, result in zip(chunk, results, strict=True):
                ids, status = encoded[todo[j]]
                outcomes[todo[j]] = TranslationOutcome(
                    text=self.tokenizer.decode(result.tokens), status=status,
                    avg_width=result.avg_width, decoder_layers=layers, source_tokens=len(ids),
                    latency_s=seconds, tokens=result.tokens, log_prob=result.log_prob,
                    steps=result.steps, width_sum=result.width_sum,
                    width_steps=result.width_steps, cut=result.cut)
        return outcomes

    def search(self, sources, subnet=None, config: BeamSearchConfig | None = None,
               progress=False):
        """Beam-search pre-tokenized sources (ids without EOS); ``Hypothesis`` list, in order."""
        if subnet is not None:
            self.model.set_subnet(self.subnet(subnet))
        config = self.search_config() if config is None else config
        hypotheses = [None] * len(sources)
        for chunk, results, _ in self._run(sources, config, progress):
            for j, result in zip(chunk, results, strict=True):
                hypotheses[j] = result
        return hypotheses

    def _run(self, sources, config, progress, deadline=None):
        """Yield ``(indices, hypotheses, seconds)`` per length-sorted batch of ``sources``."""
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc='translating', unit='batch', disable=not progress,
                          leave=False):
            chunk = order[start:start + self.batch_size]
            began = time.perf_counter()
            src = encode_sources([sources[i] for i in chunk], self.model.pad_id,
                                 self.model.eos_id).to(self.device)
            results = beam_search(self.model, src, config, deadline)
            yield chunk, results, time.perf_counter() - began

    def evaluate(self, sources, references, subnet=None, beam=None, patience=1.0,
                 progress=False) -> Evaluation:
        """Corpus BLEU (sacrebleu defaults: 13a tokenization, case-sensitive) and costs."""
        if len(sources) != len(references) or not sources:
            raise ValueError(f'sources/references: need equally many and at least one, got '
                             f'{len(sources)} and {len(references)}')
        began = time.perf_counter()
        outcomes = self.translate(sources, subnet, beam, patience, progress)
        seconds = time.perf_counter() - began
        bleu, avg_width, perplexity = corpus_scores(outcomes, references)
        return Evaluation(bleu=bleu, avg_width=avg_width, perplexity=perplexity,
                          seconds=seconds, sentences=len(sources),
                          hypotheses=[o.text for o in outcomes],
                          decoder_steps=sum(o.steps for o in outcomes))

    def step_metrics(self, texts, subnet=None, width=5, progress=False) -> dict:
        """Per-step candidate spreads (``'std'``, ``'gap'``) of fixed-width decoding of ``texts``.

        The raw material of calibration: the dynamic policy's thresholds are
        percentiles of these distributions.
        """
        sources = [ids for ids, _ in self.encode(texts) if ids]
        config = self.search_config(BeamPolicy(mode='fixed', width=width), record_steps=True)
        hypotheses = self.search(sources, subnet, config, progress)
        return {metric: np.array([v for h in hypotheses for v in h.metrics[metric]])
                for metric in ('std', 'gap')}
