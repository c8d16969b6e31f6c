"""A CTranslate2 library's points timed again on the machine that will run them.

Designing a library takes the better part of an hour; its latencies hold for
the machine and the day it was made on. Deployed on a robot, or on the same
machine after its speed has drifted, the manager starts from those figures
and corrects them as results come in, but only in proportion: a point whose
figure is off relative to the others stays off until it has run. Re-timing
keeps the library's points and qualities and measures their latencies again
the way the design's last step does (``engine_library`` step 5): every point
and thread count in shuffled rounds, in an engine that holds only the
library's models, as the translation node does, trimmed mean over rounds.
The samples are saved in a run folder as they are taken; a rerun resumes.
As in that step, a point the new figures push off the (latency at one
thread, quality) front is dropped: another point is now both faster and
better, so the manager would never pick it.
"""

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
import random

from dyn_dnn_ros.files import json_digest
from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.translation.design.engine_library import (
    EngineLibraryConfig,
    Measurements,
    engine_source,
    timing_rounds,
    trimmed_ms,
)
from dyn_dnn_ros.translation.design.pareto import pareto_front
from dyn_dnn_ros.translation.design_space import SubnetConfig


def retime_library(library: OperatingPointLibrary, engine, timing_sentences, run_dir,
                   rounds=12, trim=0.2, seed=0, progress=True) -> OperatingPointLibrary:
    """``library`` with every point's latency at every thread count measured again."""
    library.check_runs_on('ctranslate2', 'cpu', where='library')
    library.check_vocabulary_map(getattr(engine, 'vocabulary_map_sha256', ''), where='library')
    threads = tuple(sorted({int(t) for p in library.points for t in p.latency_ms}))
    config = EngineLibraryConfig(run_dir=Path(run_dir), compute_type=library.compute_type,
                                 threads=threads, rounds=rounds, trim=trim, seed=seed,
                                 timing_sentences=len(timing_sentences))
    by_key, options = {}, []
    for point in library.points:
        subnet = SubnetConfig.from_dict(point.subnet)
        by_key[subnet.key()] = subnet
        options.append((subnet.key(), point.beam.width))
    config.run_dir.mkdir(parents=True, exist_ok=True)
    store = Measurements(config.run_dir / 'measurements.json', {
        'engine': engine_source(engine),
        'points': json_digest(options),
        'timing_sentences_sha256': json_digest(list(timing_sentences)),
    })
    timing_rounds(store, 'final', engine, by_key, options, config, random.Random(seed),
                  timing_sentences, 'points', progress)
    points = [replace(point, latency_ms={t: round(trimmed_ms(store.data['final'], option, t,
                                                             config), 4) for t in threads})
              for point, option in zip(library.points, options, strict=True)]
    front = {id(p) for p in pareto_front(points, lambda p: p.latency_at(1), lambda p: p.quality)}
    points = [p for p in points if id(p) in front]   # in the library's order
    from dyn_dnn_ros.resources.hardware import hardware_description
    meta = dict(library.meta)
    meta.update({
        'host': hardware_description('cpu'),
        'timing': f'timed again on {datetime.now(timezone.utc).date().isoformat()}: '
                  f'{rounds} shuffled rounds per thread count, trimmed mean ({trim:g} each '
                  f'side), batch 1, {len(timing_sentences)} sentences one at a time, in an '
                  "engine holding only the library's models",
    })
    return replace(library, points=points, meta=meta)
