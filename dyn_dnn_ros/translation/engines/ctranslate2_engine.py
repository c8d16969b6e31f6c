"""The CTranslate2 engine: exported compact models, int8 on CPU, no torch in the process.

Every sub-network asked for is exported once into the model cache and kept
loaded, one ``ctranslate2.Translator`` per thread count (CTranslate2 fixes a
model's threads when it loads), so switching operating points is a dictionary
lookup. Models with more than one thread are the exception: the process holds
only as many of them as its CPUs allow without slowing all of them down
(``OpenMPPools``), and loads others again when asked for.

Beam search, length penalty and length limit match the torch engine's
(``beam_search.py``): the same tokens come out in float32, ties aside, when
the whole vocabulary is scored (``vocabulary_map='full'``). By default each
sentence's steps score only the shortlist the vocabulary map gives for its
source tokens (``vocabulary_map.py``): several times faster for the small
sub-networks, whose steps are mostly the output layer.

Deadlines. CTranslate2's beam search cannot be stopped part-way from outside.
The engine keeps, per model, thread count and beam width, the measured cost of
the encoder and of one decoding step, and caps the decoding length so that
the steps still fit before the deadline. With beam width 1 it also checks the
clock after every token (CTranslate2's per-token callback exists for greedy
search only). A translation stopped either way is marked ``cut``, as the torch
engine marks one stopped at its deadline. The cap is a prediction: a step
slower than measured can still end past the deadline, and the node then
reports the answer late.
"""

from collections import OrderedDict
from dataclasses import dataclass
import threading
import time
import weakref

from tqdm import tqdm

from dyn_dnn_ros.resources.cpu import allowed_cpu_count
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.ctranslate2_export import check_expressible
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.engines.model_cache import ModelCache, default_cache_dir
from dyn_dnn_ros.translation.model_file import default_model_path, default_spm_path, read_header
from dyn_dnn_ros.translation.outcome import TranslationOutcome, encode_texts, subnet_from_spec
from dyn_dnn_ros.translation.tokenizer import Tokenizer
from dyn_dnn_ros.translation.vocabulary_map import read_vocabulary_map

WARM_UP_TEXT = 'The robot is ready to take the next order from the kitchen.'
NEVER = [['<pad>'], ['<s>']]  # the torch engine never emits these either


@dataclass
class StepCost:
    """Seconds the encoder (with the first step) and each further step take."""

    first_s: float
    step_s: float

    def steps_before(self, seconds):
        """Decoding steps that fit in ``seconds`` (at least the first)."""
        return max(1, 1 + int((seconds - self.first_s) / self.step_s))

    def learn(self, seconds, steps):
        """Follow a step cost that drifts (other load, frequency) from one answer's time."""
        if steps > 1:
            observed = max((seconds - self.first_s) / (steps - 1), 1e-6)
            self.step_s = 0.8 * self.step_s + 0.2 * observed


class OpenMPPools:
    """The OpenMP threads that loaded multi-thread models keep, counted for the whole process.

    CTranslate2 runs a model's intra-op threads on libgomp, and a model with
    ``t`` threads keeps a pool of ``t - 1`` of them once it has run. libgomp
    counts every pool thread in the process, plus the process's first thread;
    once they outnumber the CPUs its threads stop spinning between parallel
    regions, and each of a decoding step's hundreds of small regions then waits
    for a thread to be woken. Measured on 2 CPUs at batch 1: one 2-thread model
    alone ran at 1.2-1.6x its 1-thread time; with a second one loaded, or the
    loading thread's own pool left over, about 3x slower still. So the
    multi-thread models held at once keep within ``budget`` pool threads (the
    CPUs this process may use, less one), the least recently used one is
    unloaded to make room, and it is loaded again when asked for. One-thread
    models keep no pool and are never unloaded.
    """

    def __init__(self, budget):
        self.budget = budget
        self._lock = threading.Lock()
        self._held = OrderedDict()  # (id(engine), model key) -> (weakref(engine), pool threads)

    @property
    def held(self):
        """Pool threads the multi-thread models loaded now keep."""
        with self._lock:
            return sum(pool for ref, pool in self._held.values() if ref() is not None)

    def used(self, engine, key):
        """``key``'s model was just used: it is the last to be unloaded."""
        with self._lock:
            if (id(engine), key) in self._held:
                self._held.move_to_end((id(engine), key))

    def make_room(self, engine, key, threads):
        """Unload least recently used models until ``threads - 1`` more fit; then count them.

        At least the new model is loaded even when it alone is over the budget
        (1 CPU): the caller asked for it.
        """
        need = threads - 1
        with self._lock:
            for held, (ref, _) in list(self._held.items()):
                if ref() is None:
                    del self._held[held]
            while self._held and sum(p for _, p in self._held.values()) + need > self.budget:
                (_, unloaded), (ref, _) = self._held.popitem(last=False)
                owner = ref()
                if owner is not None:
                    owner.unload(unloaded)
            self._held[(id(engine), key)] = (weakref.ref(engine), need)

    def forget(self, engine, key):
        """``key``'s model is not loaded after all (its load failed)."""
        with self._lock:
            self._held.pop((id(engine), key), None)


# One for the process: libgomp's count is the process's, whatever engine loaded the model,
# against the CPUs of the process's affinity.
OPENMP_POOLS = OpenMPPools(budget=max(allowed_cpu_count() - 1, 0))


def _load_on_passing_thread(load):
    """``load()`` run on a thread that then ends, its result (or exception) returned here.

    Loading a multi-thread model runs OpenMP regions on the calling thread,
    which would keep a pool of idle threads for as long as it lives, counted
    against the CPUs (``OpenMPPools``); a passing thread takes its pool along
    when it ends.
    """
    box = {}

    def run():
        try:
            box['model'] = load()
        except BaseException as error:  # noqa: BLE001  (re-raised on the caller's thread)
            box['error'] = error
    thread = threading.Thread(target=run, name='ctranslate2-load')
    thread.start()
    thread.join()
    if 'error' in box:
        raise box['error']
    return box['model']


class CTranslate2Engine:
    """Fixed-width beam search on CTranslate2 models of the SuperTransformer's sub-networks."""

    name = 'ctranslate2'
    supports_dynamic_beam = False

    def __init__(self, config):
        import ctranslate2  # noqa: F401  (fail here, with its own message, if it is missing)
        self.config = config
        self.device = config.device
        self.compute_type = config.compute_type
        model_path = config.model_path or default_model_path()
        spm_path = config.spm_path or default_spm_path()
        header = read_header(model_path)
        self.space = DesignSpace.from_dict(header['space'], source=f'{model_path} design space')
        self.tokenizer = Tokenizer(spm_path)
        if self.tokenizer.vocab_size != header['vocab_size']:
            raise ValueError(f'tokenizer {spm_path} has {self.tokenizer.vocab_size} tokens, the '
                             f'model {model_path} {header["vocab_size"]}')
        self.vocabulary = self.tokenizer.pieces()
        self._ids = {piece: i for i, piece in enumerate(self.vocabulary)}
        self.longest_source = self.space.max_positions - 1  # one position is the EOS
        map_path = config.vocabulary_map_path
        if map_path is not None:  # refuse a map of another tokenizer before any export
            read_vocabulary_map(map_path, self.vocabulary)
        self.cache = ModelCache(config.cache_dir or default_cache_dir(), model_path, spm_path,
                                config.compute_type, config.heads, vocabulary_map=map_path)
        self.use_vmap = map_path is not None
        # What a library made on this engine records, and is checked against.
        self.vocabulary_map_sha256 = self.cache.source.get('vocabulary_map_sha256', '')
        self._models = {}  # (subnet key, threads) -> ctranslate2.Translator
        self.pools = OPENMP_POOLS
        self._costs = {}  # (subnet key, threads, width) -> StepCost

    # -- sub-networks and models ------------------------------------------------------
    def subnet(self, spec):
        return subnet_from_spec(spec, self.space)

    def check_subnet(self, spec):
        """The sub-network ``spec`` names; refused, naming the field, when CTranslate2 cannot."""
        subnet = self.subnet(spec)
        check_expressible(subnet, self.config.heads)
        return subnet

    def model(self, subnet, threads=1):
        """``subnet``'s model with ``threads`` intra-op threads, loaded on first use."""
        key = (subnet.key(), threads)
        model = self._models.get(key)
        if model is None:
            import ctranslate2
            folder = self.cache.model_dir(self.check_subnet(subnet), self.vocabulary)
            pooled = threads > 1 and self.device == 'cpu'
            if pooled:
                self.pools.make_room(self, key, threads)
            try:
                model = _load_on_passing_thread(lambda: ctranslate2.Translator(
                    str(folder), device=self.device, compute_type=self.compute_type,
                    intra_threads=threads, inter_threads=1))
            except BaseException:
                if pooled:
                    self.pools.forget(self, key)
                raise
            self._models[key] = model
        elif threads > 1:
            self.pools.used(self, key)
        return model

    def unload(self, key):
        """Let go of the model ``key`` names; its OpenMP pool ends with its last reference."""
        self._models.pop(key, None)

    @property
    def loaded(self):
        """``(subnet key, threads)`` of every model held in memory."""
        return sorted(self._models)

    def prepare(self, subnets, beam=None, threads=(1,), text=WARM_UP_TEXT):
        """Load every model now and measure its step cost, so no request pays for either."""
        for subnet in subnets:
            subnet = self.check_subnet(subnet)
            for count in sorted(set(threads)):
                self._cost(subnet, count, self._width(beam))

    def _cost(self, subnet, threads, width):
        key = (subnet.key(), threads, width)
        cost = self._costs.get(key)
        if cost is None:
            cost = self._costs[key] = self._measure(subnet, threads, width)
        return cost

    def _measure(self, subnet, threads, width, steps=16, repeats=3):
        """Time the encoder plus one step, and ``steps`` steps, on a warm-up sentence."""
        model = self.model(subnet, threads)
        source = [self._pieces(self.tokenizer.encode(WARM_UP_TEXT))]

        def median_of(length):
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                model.translate_batch(source, beam_size=width, min_decoding_length=length,
                                      max_decoding_length=length, suppress_sequences=NEVER,
                                      use_vmap=self.use_vmap)
                times.append(time.perf_counter() - began)
            return sorted(times)[len(times) // 2]

        median_of(steps)  # the first call builds the thread pool and caches
        first, many = median_of(1), median_of(steps)
        return StepCost(first_s=first, step_s=max((many - first) / (steps - 1), 1e-6))

    # -- translation ---------------------------------------------------------------------
    def _pieces(self, ids):
        return [self.vocabulary[i] for i in ids]

    def _width(self, beam):
        if beam is None:
            return 5
        if isinstance(beam, int):
            return beam
        if not isinstance(beam, BeamPolicy):
            raise ValueError(f'beam: expected a width or a BeamPolicy, got {beam!r}')
        if beam.mode != 'fixed':
            raise ValueError('beam: dynamic beam width is a feature of the torch engine; '
                             'the ctranslate2 engine runs fixed widths')
        return beam.width

    def _limit(self, source_tokens):
        """The torch engine's length limit: target tokens, EOS excluded."""
        return int((source_tokens + 1) * self.config.max_len_a + self.config.max_len_b)

    def translate(self, texts, subnet=None, beam=None, threads=None, deadline=None,
                  max_source_tokens=None, progress=False, patience=1.0, batch_size=None):
        """One ``TranslationOutcome`` per text, in order (see ``Translator.translate``).

        ``deadline`` (a ``time.monotonic()`` value): the decoding length is
        capped so that the answer is due by then; an answer so capped is ``cut``.
        """
        if isinstance(texts, str):
            raise ValueError('texts: expected a list of strings, got one string')
        if subnet is None:
            raise ValueError('subnet: the ctranslate2 engine needs the sub-network to run')
        subnet = self.check_subnet(subnet)
        width, threads = self._width(beam), threads or 1
        model = self.model(subnet, threads)
        longest = min(max_source_tokens or self.longest_source, self.longest_source)
        encoded = encode_texts(self.tokenizer, texts, longest)
        layers = subnet.decoder_layers
        outcomes = [TranslationOutcome('', 'empty', 0.0, layers, 0, 0.0)
                    if status == 'empty' else None for _, status in encoded]
        todo = sorted((i for i, (ids, _) in enumerate(encoded) if ids),
                      key=lambda i: len(encoded[i][0]))
        batch_size = batch_size or self.config.batch_size
        starts = range(0, len(todo), batch_size)
        for start in tqdm(starts, desc='translating', unit='batch', disable=not progress,
                          leave=False):
            chunk = todo[start:start + batch_size]
            self._run_batch(model, subnet, threads, width, chunk, encoded, outcomes, deadline,
                            patience)
        return outcomes

    def _run_batch(self, model, subnet, threads, width, chunk, encoded, outcomes, deadline,
                   patience):
        natural = max(self._limit(len(encoded[i][0])) for i in chunk) + 1  # + EOS
        length, callback, cost = natural, None, None
        began = time.perf_counter()
        if deadline is not None:
            cost = self._cost(subnet, threads, width)
            left = deadline - time.monotonic()
            if left < cost.first_s:  # not even the encoder and a first token fit: stop now
                for i in chunk:
                    outcomes[i] = TranslationOutcome(
                        '', encoded[i][1], 0.0, subnet.decoder_layers, len(encoded[i][0]),
                        time.perf_counter() - began, cut=True)
                return
            length = min(natural, cost.steps_before(left))
            if width == 1:
                def callback(step, cost=cost):  # noqa: ARG001
                    return time.monotonic() + cost.step_s > deadline
        results = model.translate_batch(
            [self._pieces(encoded[i][0]) for i in chunk], beam_size=width, patience=patience,
            length_penalty=self.config.alpha, max_decoding_length=length,
            suppress_sequences=NEVER, return_scores=True, return_end_token=True,
            callback=callback, use_vmap=self.use_vmap)
        seconds = time.perf_counter() - began
        for i, result in zip(chunk, results, strict=True):
            pieces = result.hypotheses[0]
            ended = bool(pieces) and pieces[-1] == '</s>'
            tokens = [self._ids[p] for p in (pieces[:-1] if ended else pieces)]
            limit = self._limit(len(encoded[i][0]))
            cut = deadline is not None and not ended and len(tokens) < limit
            steps = len(tokens) + (1 if ended else 0)
            normaliser = max(steps, 1) ** self.config.alpha
            ids, status = encoded[i]
            outcomes[i] = TranslationOutcome(
                text=self.tokenizer.decode(tokens), status=status, avg_width=float(width),
                decoder_layers=subnet.decoder_layers, source_tokens=len(ids),
                latency_s=seconds, tokens=tokens, log_prob=result.scores[0] * normaliser,
                steps=steps, width_sum=width * max(steps - 1, 0),
                width_steps=max(steps - 1, 0), cut=cut)
        if cost is not None and len(chunk) == 1:
            cost.learn(seconds, outcomes[chunk[0]].steps)
