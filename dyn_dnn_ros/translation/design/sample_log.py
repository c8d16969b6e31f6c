"""The sample log: every timing sample of a measurement run, and the drift probe's.

Built for a machine whose speed drifts (a shared virtual machine). A drift
probe, the largest sub-network at the deployment beam whatever beam the
configs are timed with (one gauge of the machine's speed), is timed again
after every ``reference_every`` samples of a thread count; each sample is
scaled by a reference divided by the probe's time at that moment
(interpolated), which divides out the machine's slow drift. The reference
is the probe's median when the first row of its thread count is computed;
it is then written to the log and kept, so later runs appending to the log
(the sweep's winners and random cloud) land on the same scale instead of
moving it under rows written earlier.

Every sample is appended to a JSON-lines log beside the CSV as it is taken,
so an interrupted run resumes at the next sample.
"""

import json
from pathlib import Path
import statistics
import time

import numpy as np

from dyn_dnn_ros.timing import trimmed_stats
from dyn_dnn_ros.translation.design.timing_protocol import Sample, Timing


def samples_beside(csv_path) -> Path:
    """The sample log a latency CSV keeps unless told otherwise: beside it, named after it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + '.samples.jsonl')


class SampleLog:
    """Every sample of a measurement run, one JSON line each, appended as it is taken.

    Holds the samples of configs (per config, thread count, beam and round) and
    of the drift probe (per thread count and the probe's beam), each with its
    wall-clock time, so a resumed run can still interpolate the probe across
    both runs, and the probe's frozen reference per thread count and beam.
    """

    def __init__(self, path, device, workload):
        self.path, self.device, self.workload = Path(path), device, workload
        self.cells, self.probes, self.references = {}, {}, {}
        if self.path.is_file() and self.path.stat().st_size:
            self._read()
        else:
            self._write({'device': device, 'workload': workload})

    def _read(self):
        text = self.path.read_text(encoding='utf-8')
        if not text.endswith('\n'):  # a run killed mid-write: drop the partial line
            text = text[:text.rfind('\n') + 1]
            self.path.write_text(text, encoding='utf-8')
        if not text:
            self._write({'device': self.device, 'workload': self.workload})
            return
        lines = text.splitlines()
        try:
            header = json.loads(lines[0])
            records = [json.loads(line) for line in lines[1:] if line.strip()]
        except (json.JSONDecodeError, IndexError) as err:
            raise ValueError(f'{self.path}: not a latency sample log ({err})') from None
        if header != {'device': self.device, 'workload': self.workload}:
            raise ValueError(f'{self.path}: samples of {header}, this run is {self.device} with '
                             f'workload {self.workload!r}; write to another file')
        for record in records:
            self._remember(record)

    def _remember(self, record):
        series = (record['threads'], record['beam'])
        if record['kind'] == 'reference':
            self.references.setdefault(series, record['ms'])
            return
        entry = (record['time'], record['ms'], record['steps'])
        if record['kind'] == 'probe':
            self.probes.setdefault(series, []).append(entry[:2])
        else:
            self.cells.setdefault((record['key'], *series), {})[record['round']] = entry

    def _write(self, record):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, 'a', encoding='utf-8') as stream:
            stream.write(json.dumps(record, sort_keys=True) + '\n')

    def add(self, kind, key, threads, beam_json, round_, sample: Sample):
        record = {'kind': kind, 'key': key, 'threads': threads, 'beam': beam_json,
                  'round': round_, 'time': time.time(), 'ms': sample.ms, 'steps': sample.steps}
        self._write(record)
        self._remember(record)

    def has(self, key, threads, beam_json, round_) -> bool:
        return round_ in self.cells.get((key, threads, beam_json), {})

    def reference(self, threads, beam_json) -> float:
        """The probe time all samples of a series are scaled to, frozen at first use.

        The median of the probes so far, written to the log the first time it is
        asked for: a median of *all* probes would move whenever a later run
        appends some, and rows computed before and after would disagree.
        """
        series = (threads, beam_json)
        if series not in self.references:
            probe_ms = [ms for _, ms in self.probes[series]]
            self._write({'kind': 'reference', 'threads': threads, 'beam': beam_json,
                         'ms': float(np.median(probe_ms)), 'probes': len(probe_ms),
                         'time': time.time()})
            self.references[series] = float(np.median(probe_ms))
        return self.references[series]

    def start_beside(self, path) -> 'SampleLog':
        """A log at ``path`` with samples of its own on this log's scale.

        A config this log holds is timed again there, in that log's rounds,
        while this log's frozen probe references are copied over (where that
        log has none yet), so its latencies land on the same scale.
        """
        log = SampleLog(path, self.device, self.workload)
        for (threads, beam_json), ms in self.references.items():
            if (threads, beam_json) not in log.references:
                log._write({'kind': 'reference', 'threads': threads, 'beam': beam_json,
                            'ms': ms, 'copied_from': str(self.path), 'time': time.time()})
                log.references[(threads, beam_json)] = ms
        return log

    def timing(self, key, threads, beam_json, trim, probe_beam_json=None) -> Timing:
        """The trimmed mean of a config's samples, each scaled by the drift probe.

        ``probe_beam_json``: the beam the probe ran with (default: the config's).
        """
        samples = self.cells[(key, threads, beam_json)].values()
        times = [t for t, _, _ in samples]
        ms = np.array([m for _, m, _ in samples])
        probe_beam_json = probe_beam_json or beam_json
        probes = sorted(self.probes.get((threads, probe_beam_json), []))
        if probes:
            probe_times, probe_ms = zip(*probes, strict=True)
            reference = self.reference(threads, probe_beam_json)
            ms = ms * reference / np.interp(times, probe_times, probe_ms)
        mean, std, n = trimmed_stats(ms.tolist(), trim)
        return Timing(mean, std, n, statistics.fmean(steps for _, _, steps in samples))
