"""The latency CSV: one row per timed (sub-network, device, thread count, beam).

Rows are appended as their measurements finish and never rewritten; a rerun
reads what is there and skips it. Every row records the workload it was
timed with, and one file holds rows of one device and workload only.
"""

import csv
from dataclasses import dataclass, field
import json
from pathlib import Path

import torch

from dyn_dnn_ros.resources.hardware import hardware_description
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.devices import DEVICES
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.validation import require_finite

CSV_COLUMNS = ('key', 'config', 'device', 'threads', 'beam', 'workload', 'torch_version', 'host',
               'latency_ms', 'std_ms', 'n', 'decoder_steps', 'timestamp')


@dataclass(frozen=True)
class LatencyRow:
    config: SubnetConfig
    device: str
    threads: int
    beam: BeamPolicy
    workload: str
    latency_ms: float
    std_ms: float
    n: int
    decoder_steps: float
    torch_version: str = str(torch.__version__)
    host: str = field(default_factory=hardware_description)
    timestamp: str = ''

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def beam_json(self) -> str:
        return json.dumps(self.beam.to_dict(), sort_keys=True)

    def to_record(self) -> dict:
        return {
            'key': self.key, 'config': json.dumps(self.config.to_dict(), sort_keys=True),
            'device': self.device, 'threads': self.threads, 'beam': self.beam_json,
            'workload': self.workload, 'torch_version': self.torch_version, 'host': self.host,
            'latency_ms': f'{self.latency_ms:.4f}', 'std_ms': f'{self.std_ms:.4f}',
            'n': self.n, 'decoder_steps': f'{self.decoder_steps:.3f}',
            'timestamp': self.timestamp,
        }


def _number(record, name, where, kind=float, minimum=0.0, strict=False):
    text = record.get(name)
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: {name}={text!r} is not a number') from None
    return require_finite(f'{where}: {name}', value, minimum, strict=strict)


def _row_from_record(record, where, space=None) -> LatencyRow:
    try:
        config = SubnetConfig.from_dict(json.loads(record['config']))
    except (TypeError, ValueError) as err:
        raise ValueError(f'{where}: bad config {record.get("config")!r}: {err}') from None
    if space is not None:
        try:
            space.validate(config)
        except ValueError as err:
            raise ValueError(f'{where}: config {config.key()} is outside the design space: '
                             f'{err}') from None
    if record['key'] != config.key():
        raise ValueError(f'{where}: key {record["key"]!r} does not match its config '
                         f'({config.key()})')
    if record['device'] not in DEVICES:
        raise ValueError(f'{where}: device {record["device"]!r} not in {DEVICES}')
    try:
        beam = BeamPolicy.from_dict(json.loads(record['beam']))
    except (TypeError, ValueError) as err:
        raise ValueError(f'{where}: bad beam {record.get("beam")!r}: {err}') from None
    return LatencyRow(
        config=config, device=record['device'],
        threads=_number(record, 'threads', where, int, 1), beam=beam,
        workload=record['workload'],
        latency_ms=_number(record, 'latency_ms', where, strict=True),
        std_ms=_number(record, 'std_ms', where),
        n=_number(record, 'n', where, int, 1),
        decoder_steps=_number(record, 'decoder_steps', where, strict=True),
        torch_version=record['torch_version'], host=record['host'],
        timestamp=record['timestamp'])


def read_latency_csv(path, space: DesignSpace | None = None, allow_empty=False):
    """Rows of a latency CSV, validated (and checked against ``space`` when given)."""
    path = Path(path)
    try:
        with open(path, newline='', encoding='utf-8') as stream:
            reader = csv.DictReader(stream)
            columns = reader.fieldnames
            if not columns:
                raise ValueError(f'{path}: empty file, no CSV header')
            missing = [c for c in CSV_COLUMNS if c not in columns]
            if missing:
                raise ValueError(f'{path}: not a latency CSV, missing column(s) {missing}')
            rows = []
            for line, record in enumerate(reader, start=2):
                if None in record or any(record[c] is None for c in CSV_COLUMNS):
                    raise ValueError(f'{path}:{line}: malformed row (wrong number of fields)')
                rows.append(_row_from_record(record, f'{path}:{line}', space))
    except OSError as err:
        raise ValueError(f'{path}: cannot read latency CSV ({err.strerror})') from None
    if not rows and not allow_empty:
        raise ValueError(f'{path}: no measurements')
    return rows


class LatencyCsv:
    """An append-only latency CSV: what is measured already, and where new rows go."""

    def __init__(self, path, device, workload):
        self.path, self.device, self.workload = Path(path), device, workload
        self.rows = read_latency_csv(self.path, allow_empty=True) if self.path.is_file() else []
        for i, row in enumerate(self.rows):
            if (row.device, row.workload) != (device, workload):
                raise ValueError(f'{self.path}: row {i + 2} was measured on {row.device} with '
                                 f'workload {row.workload!r}, this run is {device} with '
                                 f'{workload!r}; write to another file')
        self._index = {(r.key, r.threads, r.beam_json): r for r in self.rows}

    def get(self, cfg, threads, beam: BeamPolicy):
        return self._index.get((cfg.key(), threads, json.dumps(beam.to_dict(), sort_keys=True)))

    def append(self, row: LatencyRow):
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, 'a', newline='', encoding='utf-8') as stream:
            writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row.to_record())
        self.rows.append(row)
        self._index[(row.key, row.threads, row.beam_json)] = row
