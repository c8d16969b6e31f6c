"""The latency dataset: random sub-networks timed on this machine, one CSV row per thread count.

Workload (Parry et al., Fig. 2 step 2, at deployment settings): one source
sentence at a time (batch 1), translated by the real beam search at the
deployment width on the super model after ``set_subnet`` (no weight copy, as
at run time), on a fixed, seeded set of K validation sentences
(``workload``), decoded to their reference lengths by default
(``measured_decoding``).

Protocol (``timing_protocol``): a *sample* is the mean time per sentence of
one pass over the K sentences, after a warm-up translation. Samples are
taken in R rounds; each round visits every (config, thread count) once, in a
seeded shuffled order, so slow phases of the machine spread over all configs
instead of landing on a few. A drift probe, timed between the samples,
scales them to one reference speed of the machine (``sample_log``). The
fastest and slowest 10 % of a config's scaled samples are dropped and the
rest averaged (the paper's trimmed mean).

Every config is timed at every CPU thread count 1..N, because the run-time
manager must know what happens when cores disappear. Every sample goes to
the sample log as it is taken, so an interrupted run resumes at the next
sample; a config's CSV row (``latency_csv``) is written once all its rounds
are done, and a rerun skips the (config, thread count, beam) combinations
the CSV already has. Which configs are timed: ``config_sampling``.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
import json
from pathlib import Path
import statistics
import time

import torch
from tqdm import tqdm

from dyn_dnn_ros.share import data_path, runs_path
from dyn_dnn_ros.timing import round_orders, synchronizer, timed_call, torch_threads
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.config_sampling import dataset_configs, load_sampling_bias
from dyn_dnn_ros.translation.design.devices import (
    check_device,
    check_thread_counts,
    default_threads,
)
from dyn_dnn_ros.translation.design.latency_csv import LatencyCsv, LatencyRow
from dyn_dnn_ros.translation.design.measured_decoding import workload_decoder
from dyn_dnn_ros.translation.design.sample_log import SampleLog, samples_beside
from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol, Sample
from dyn_dnn_ros.translation.design.workload import Workload, load_workload, source_tensors
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.validation import require_int, require_positive


def take_sample(model, cfg: SubnetConfig, sources, protocol: LatencyProtocol, threads,
                beam: BeamPolicy) -> Sample:
    """One sample of ``cfg``: switch to it, warm up, time one pass over ``sources``.

    ``sources``: ``([1, S] tensor, reference length)`` pairs on the model's device.
    """
    require_int('threads', threads, 1)
    if not sources:
        raise ValueError('sources: need at least one workload sentence')
    model.set_subnet(cfg)
    decode = workload_decoder(model, protocol, beam)
    with torch_threads(threads):
        for _ in range(protocol.warmup):
            decode(*sources[0])
        steps, elapsed = timed_call(lambda: [decode(src, length) for src, length in sources],
                                    synchronizer(sources[0][0].device))
    return Sample(elapsed * 1e3 / len(sources), statistics.fmean(steps))


def measure_configs(model, configs, workload: Workload, protocol: LatencyProtocol, threads,
                    csv_path, device='cpu', beam: BeamPolicy | None = None, progress=True,
                    desc='latency', samples_path=None) -> list[LatencyRow]:
    """Time every config at every thread count into ``csv_path``, skipping measured ones.

    The protocol of the module docstring: ``protocol.repeats`` rounds, each over
    all (config, thread count) pairs in a seeded order, with the drift probe
    (the largest sub-network at the deployment beam) timed per thread count.
    Samples go to ``samples_path`` (default: beside the CSV); calls that share
    it share the probe's frozen reference, so their latencies are on one
    scale. The model must already be on ``device``. Returns the rows of
    ``configs`` x ``threads`` (old and new), in that order.
    """
    threads = check_thread_counts(threads)
    return measure_pairs(model, [(c, t) for c in configs for t in threads], workload, protocol,
                         csv_path, device, beam, progress, desc, samples_path)


def measure_pairs(model, pairs, workload: Workload, protocol: LatencyProtocol, csv_path,
                  device='cpu', beam: BeamPolicy | None = None, progress=True,
                  desc='latency', samples_path=None) -> list[LatencyRow]:
    """``measure_configs`` for (config, thread count) pairs: each config at its own counts.

    All pairs share the rounds and the probes, so a set timed at every thread
    count and a set timed at one are on one scale. Returns the pairs' rows in
    their order.
    """
    check_device(device)
    pairs = list(pairs)
    check_thread_counts([t for _, t in pairs] or [1])
    beam = BeamPolicy('fixed', protocol.beam) if beam is None else beam
    beam_json = json.dumps(beam.to_dict(), sort_keys=True)
    probe_beam = BeamPolicy('fixed', protocol.beam)
    csv_path = Path(csv_path)
    table = LatencyCsv(csv_path, device, protocol.workload)
    todo = list({(c.key(), t): (c, t) for c, t in pairs
                 if table.get(c, t, beam) is None}.values())
    if todo:
        log = SampleLog(samples_path or samples_beside(csv_path),
                        device, protocol.workload)
        tensors = source_tensors(model, workload, torch.device(device))
        _take_rounds(model, todo, tensors, protocol, beam, probe_beam, log, progress, desc)
        for cfg, t in todo:
            timing = log.timing(cfg.key(), t, beam_json, protocol.trim,
                                json.dumps(probe_beam.to_dict(), sort_keys=True))
            table.append(LatencyRow(
                config=cfg, device=device, threads=t, beam=beam, workload=protocol.workload,
                # Rounded as the CSV stores them, so fresh and resumed rows are alike.
                latency_ms=round(timing.latency_ms, 4), std_ms=round(timing.std_ms, 4),
                n=timing.n, decoder_steps=round(timing.decoder_steps, 3),
                timestamp=datetime.now(timezone.utc).isoformat(timespec='seconds')))
    return [table.get(c, t, beam) for c, t in pairs]


def _take_rounds(model, todo, sources, protocol, beam, probe_beam, log, progress, desc):
    beam_json = json.dumps(beam.to_dict(), sort_keys=True)
    probe_beam_json = json.dumps(probe_beam.to_dict(), sort_keys=True)
    probe = model.space.largest()
    # A (re)started run probes each thread count before its first sample.
    since_probe = {t: protocol.reference_every for _, t in todo}

    def probe_if_due(t, force=False):
        if protocol.reference_every and (force or since_probe[t] >= protocol.reference_every):
            log.add('probe', probe.key(), t, probe_beam_json, None,
                    take_sample(model, probe, sources, protocol, t, probe_beam))
            since_probe[t] = 0

    done = sum(log.has(c.key(), t, beam_json, r) for c, t in todo
               for r in range(protocol.repeats))
    with tqdm(total=len(todo) * protocol.repeats, initial=done, desc=desc, unit='sample',
              disable=not progress, dynamic_ncols=True) as bar:
        # Shuffled, seeded per round: a resumed run keeps the order.
        for round_, order in round_orders(todo, protocol.repeats, shuffled=True):
            for cfg, t in order:
                if log.has(cfg.key(), t, beam_json, round_):
                    continue
                probe_if_due(t)
                log.add('config', cfg.key(), t, beam_json, round_,
                        take_sample(model, cfg, sources, protocol, t, beam))
                since_probe[t] += 1
                bar.update()
        if done < len(todo) * protocol.repeats:  # bracket the last samples
            for t in sorted(since_probe):
                probe_if_due(t, force=True)


def affordable_count(model, workload: Workload, protocol: LatencyProtocol, threads, budget_s,
                     upper, device='cpu') -> int:
    """How many sub-networks a dataset at ``threads`` can time in about ``budget_s`` seconds.

    The smallest and the largest sub-network are timed as the dataset times them
    (a switch, the warm-up and a pass over the workload, by the wall clock), two
    samples each per thread count after an untimed one; their mean is one
    sample's cost. A config costs ``repeats`` samples per thread count, plus its
    share of the drift probes (the largest sub-network). At most ``upper``.
    A budget that cannot pay for the two extremes is refused, naming the cost.
    """
    require_positive('budget', budget_s, 'seconds')
    threads = check_thread_counts(threads)
    sources = source_tensors(model, workload, torch.device(device))
    beam = BeamPolicy('fixed', protocol.beam)
    cost, probe_cost = 0.0, 0.0
    for t in threads:
        walls = {}
        for cfg in (model.space.smallest(), model.space.largest()):
            take_sample(model, cfg, sources, protocol, t, beam)
            began = time.perf_counter()
            for _ in range(2):
                take_sample(model, cfg, sources, protocol, t, beam)
            walls[cfg.key()] = (time.perf_counter() - began) / 2
        cost += statistics.fmean(walls.values())
        probe_cost += walls[model.space.largest().key()]
    per_config = protocol.repeats * (
        cost + (probe_cost / protocol.reference_every if protocol.reference_every else 0.0))
    count = min(upper, int(budget_s / per_config))
    if count < 2:
        raise ValueError(f'budget: {budget_s:.0f} s pays for {count} sub-network(s); one costs '
                         f'{per_config:.1f} s here and the dataset needs at least 2')
    return count


@dataclass(frozen=True)
class LatencyDatasetConfig:
    out: Path = runs_path('design', 'latency_cpu.csv')
    model_path: Path | None = None  # None: the shipped model
    spm_path: Path | None = None
    corpus_dir: Path = data_path('corpus')
    device: str = 'cpu'
    samples: int = 300
    seed: int = 1
    threads: tuple | None = None  # None: default_threads(device)
    bias_path: Path | None = None
    protocol: LatencyProtocol = LatencyProtocol()
    # Seconds the timing may take: ``samples`` becomes an upper limit and the count is
    # what a calibration says fits (``affordable_count``). None: exactly ``samples``.
    budget_s: float | None = None


def load_model_and_tokenizer(model_path, spm_path, device):
    """The SuperTransformer (eval mode, on ``device``) and its tokenizer."""
    from dyn_dnn_ros.translation.checkpoint import load_model
    from dyn_dnn_ros.translation.tokenizer import Tokenizer
    from dyn_dnn_ros.translation.translator import default_model_path, default_spm_path
    tokenizer = Tokenizer(spm_path or default_spm_path())
    model = load_model(model_path or default_model_path(), device=device)
    for name in ('vocab_size', 'pad_id', 'bos_id', 'eos_id'):
        if getattr(model, name) != getattr(tokenizer, name):
            raise ValueError(f'tokenizer {name}={getattr(tokenizer, name)} does not match the '
                             f'model ({getattr(model, name)})')
    return model, tokenizer


def build_latency_dataset(config: LatencyDatasetConfig, progress=True) -> list[LatencyRow]:
    """Measure ``config.samples`` sub-networks at every thread count into ``config.out``."""
    device = check_device(config.device)
    if config.budget_s is not None:  # before the model is loaded
        require_positive('budget', config.budget_s, 'seconds')
    threads = config.threads or default_threads(device)
    model, tokenizer = load_model_and_tokenizer(config.model_path, config.spm_path, device)
    bias = (load_sampling_bias(config.bias_path, device, model.space)
            if config.bias_path is not None else None)
    p = config.protocol
    workload = load_workload(config.corpus_dir, tokenizer, p.sentences, p.sentence_seed,
                             model.space.max_positions)
    count = config.samples
    if config.budget_s is not None:
        count = affordable_count(model, workload, p, threads, config.budget_s, config.samples,
                                 device)
        if progress:
            print(f'latency: {count} sub-networks fit a budget of {config.budget_s:.0f} s '
                  f'(at most {config.samples})', flush=True)
    # A prefix of the same seeded list, so a budget run resumed with another count
    # keeps the sub-networks it has timed.
    configs = dataset_configs(model.space, count, config.seed, bias)
    return measure_configs(model, configs, workload, p, threads, config.out, device,
                           progress=progress)
