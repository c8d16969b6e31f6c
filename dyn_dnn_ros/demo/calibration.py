"""Per-request latency of every operating point on the demo's own sentences.

A library's latency is a mean over a few fixed sentences in a quiet process;
a budget holds per request, and the demo's requests differ in length. The
demo's budgets are therefore planned from a quantile of per-sentence latency
measured here, on this machine, with the sentences the demo will send.
"""

import threading

import numpy as np


def tail_latencies(library, sources, threads, quantile=90.0, warmup=2, model_path=None,
                   spm_path=None):
    """``{point name: quantile of per-sentence latency in ms}`` at ``threads`` threads.

    Runs on a thread of its own that also loads the model, as the nodes do
    (``InferenceWorker``), so the figures match what a node will see.
    """
    import time

    import torch

    from dyn_dnn_ros.translation.design_space import SubnetConfig
    from dyn_dnn_ros.translation.translator import Translator

    if not sources:
        raise ValueError('calibration: no sentences to time')
    found, failure = {}, []

    def measure():
        try:
            translator = Translator.load(model_path or None, spm_path or None)
            torch.set_num_threads(threads)
            for point in library.points:
                subnet = SubnetConfig.from_dict(point.subnet)
                translator.translate(list(sources[:warmup]), subnet=subnet, beam=point.beam)
                times = []
                for source in sources:
                    began = time.perf_counter()
                    translator.translate([source], subnet=subnet, beam=point.beam)
                    times.append((time.perf_counter() - began) * 1000.0)
                found[point.name] = float(np.percentile(times, quantile))
        except Exception as error:  # reported to the caller below
            failure.append(error)

    thread = threading.Thread(target=measure, name='calibration')
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return found
