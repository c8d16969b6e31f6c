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
    """``{point name: quantile of per-sentence latency in ms}`` with at most ``threads`` threads.

    Runs on the library's engine, on a thread of its own that also loads the
    model, as the nodes do (``InferenceWorker``), so the figures match what a
    node will see.
    """
    import time

    from dyn_dnn_ros.translation.design_space import SubnetConfig
    from dyn_dnn_ros.translation.engines import create_library_engine

    if not sources:
        raise ValueError('calibration: no sentences to time')
    found, failure = {}, []

    def fastest_threads(point):
        # The manager runs a point on its fastest measured count (runtime/policy.py).
        usable = {int(t): ms for t, ms in point.latency_ms.items() if int(t) <= threads}
        return min(usable, key=usable.get) if usable else threads

    def measure():
        try:
            engine = create_library_engine(library, model_path=model_path or None,
                                           spm_path=spm_path or None)
            for point in library.points:
                subnet, count = SubnetConfig.from_dict(point.subnet), fastest_threads(point)
                engine.translate(list(sources[:warmup]), subnet, point.beam, threads=count)
                times = []
                for source in sources:
                    began = time.perf_counter()
                    engine.translate([source], subnet, point.beam, threads=count)
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
