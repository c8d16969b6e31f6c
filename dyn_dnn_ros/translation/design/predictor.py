"""Latency predictors fitted to a latency dataset, one per CPU thread count.

Two candidates per thread count, and the better one on a validation split
(carved from the training part) is kept:

* ``additive``: ``latency = sum_k c_k * term_k`` over per-layer cost terms
  (``features.cost_terms``), ``c_k >= 0``, fitted by non-negative least
  squares on relative errors. Few parameters, monotone, extrapolates sanely.
* ``mlp``: a small seeded MLP on per-layer sizes plus the cost terms,
  regressing log latency (so its squared error is a relative error).

HAT's predictor (an MLP on ten averaged features, 3 x 400 hidden units) is
trained on the same split as a baseline. All three are scored on a held-out,
seeded 20 % of the configs (MAPE and largest relative error).

Why one model per thread count rather than threads as a feature: every config
is measured at every count, so each model sees the full dataset; how well an
op parallelises depends on its size, an interaction an additive model cannot
express; and the run-time manager asks per count anyway.

Decoder steps are an input (per-step work scales with them). When predicting
an unmeasured config, the steps come from a linear model of the steps on
HAT's features, fitted to the same dataset.

The predictor is saved as one safetensors file (no pickle): tensors for
coefficients and weights, a JSON header for the rest.
"""

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path
import random

import numpy as np
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
import torch
from torch import nn

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.features import feature_matrix, hat_features
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.validation import require_in_interval, require_int, require_positive

FORMAT = 'dyn_dnn_ros.latency_predictor/1'
HEADER_KEY = 'dyn_dnn_ros'
KINDS = ('additive', 'mlp')


@dataclass(frozen=True)
class PredictorConfig:
    test_fraction: float = 0.2  # held-out configs, for the reported errors
    valid_fraction: float = 0.2  # of the rest, to choose between additive and MLP
    seed: int = 0
    kinds: tuple = KINDS  # candidates to choose from
    hidden: int = 32
    layers: int = 2
    epochs: int = 2000  # full-batch Adam steps (MLP and HAT baseline alike)
    lr: float = 3e-3
    weight_decay: float = 1e-3
    hat_hidden: int = 400  # HAT's predictor: 3 hidden layers of 400
    hat_layers: int = 3
    hat_baseline: bool = True

    def __post_init__(self):
        for name in ('test_fraction', 'valid_fraction'):
            require_in_interval(f'predictor.{name}', getattr(self, name), '(0, 0.5)')
        for name in ('hidden', 'layers', 'epochs', 'hat_hidden', 'hat_layers'):
            require_int(f'predictor.{name}', getattr(self, name), 1)
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ValueError(f'predictor.kinds: must be a non-empty subset of {KINDS}, '
                             f'got {self.kinds!r}')
        require_positive('predictor.lr', self.lr)


def errors(predicted, measured) -> dict:
    """MAPE and largest relative error (both %), largest absolute error (ms)."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    relative = np.abs(predicted - measured) / measured
    return {'mape': float(100 * relative.mean()), 'max_pct': float(100 * relative.max()),
            'max_ms': float(np.abs(predicted - measured).max()), 'n': int(measured.size)}


# -- the two model families ----------------------------------------------------------


class AdditiveModel:
    """Non-negative weights on cost terms, fitted on relative errors."""

    kind = 'additive'
    features = 'cost'

    def __init__(self, coef):
        self.coef = np.asarray(coef, dtype=np.float64)

    @classmethod
    def fit(cls, x, y, config=None):
        from scipy.optimize import nnls
        # Dividing each row by its target turns least squares into least relative
        # squares; scaling columns to [0, 1] only conditions the solve (c >= 0 is kept).
        scale = np.abs(x).max(axis=0)
        scale[scale == 0] = 1.0
        coef, _ = nnls((x / scale) / y[:, None], np.ones_like(y), maxiter=50 * x.shape[1])
        return cls(coef / scale)

    def predict(self, x):
        return x @ self.coef

    def state(self):
        return {'coef': self.coef}, {}

    @classmethod
    def from_state(cls, tensors, meta):
        return cls(tensors['coef'])


def _mlp(inputs, hidden, layers):
    blocks, width = [], inputs
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, 1)).double()


class MLPModel:
    """A seeded MLP on standardised features; ``target`` 'log' (ours) or 'scaled' (HAT's)."""

    kind = 'mlp'

    def __init__(self, net, x_mean, x_std, y_shift, y_scale, target, features, hidden, layers):
        self.net, self.x_mean, self.x_std = net, x_mean, x_std
        self.y_shift, self.y_scale, self.target = y_shift, y_scale, target
        self.features, self.hidden, self.layers = features, hidden, layers

    @classmethod
    def fit(cls, x, y, config: PredictorConfig, features='mlp', target='log', hidden=None,
            layers=None):
        hidden = config.hidden if hidden is None else hidden
        layers = config.layers if layers is None else layers
        if target == 'log':
            x_mean, x_std = x.mean(axis=0), x.std(axis=0)
            t = np.log(y)
            y_shift, y_scale = float(t.mean()), float(t.std() or 1.0)
        else:  # HAT: features already scaled by their maxima, latency by the largest one
            x_mean, x_std = np.zeros(x.shape[1]), np.ones(x.shape[1])
            t = y
            y_shift, y_scale = 0.0, float(y.max())
        x_std = np.where(x_std > 0, x_std, 1.0)
        inputs = torch.from_numpy((x - x_mean) / x_std)
        goal = torch.from_numpy((t - y_shift) / y_scale)[:, None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            net = _mlp(x.shape[1], hidden, layers)
            optimizer = torch.optim.Adam(net.parameters(), lr=config.lr,
                                         weight_decay=config.weight_decay)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
            for _ in range(config.epochs):
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(net(inputs), goal)
                loss.backward()
                optimizer.step()
                schedule.step()
        return cls(net.eval(), x_mean, x_std, y_shift, y_scale, target, features, hidden,
                   layers)

    @torch.no_grad()
    def predict(self, x):
        out = self.net(torch.from_numpy((x - self.x_mean) / self.x_std))[:, 0].numpy()
        out = out * self.y_scale + self.y_shift
        return np.exp(out) if self.target == 'log' else out

    def state(self):
        tensors = {f'net.{k}': v.numpy() for k, v in self.net.state_dict().items()}
        tensors.update(x_mean=self.x_mean, x_std=self.x_std)
        meta = {'y_shift': self.y_shift, 'y_scale': self.y_scale, 'target': self.target,
                'features': self.features, 'hidden': self.hidden, 'layers': self.layers}
        return tensors, meta

    @classmethod
    def from_state(cls, tensors, meta):
        net = _mlp(len(tensors['x_mean']), meta['hidden'], meta['layers'])
        net.load_state_dict({k[4:]: torch.from_numpy(np.asarray(v)) for k, v in tensors.items()
                             if k.startswith('net.')})
        return cls(net.eval(), np.asarray(tensors['x_mean']), np.asarray(tensors['x_std']),
                   meta['y_shift'], meta['y_scale'], meta['target'], meta['features'],
                   meta['hidden'], meta['layers'])


MODEL_CLASSES = {'additive': AdditiveModel, 'mlp': MLPModel}


def _fit(kind, x, y, config):
    return MODEL_CLASSES[kind].fit(x, y, config)


# -- decoder steps of unmeasured configs ---------------------------------------------------


class StepsModel:
    """Least squares of the decoder steps on HAT's features (a constant in fixed-length mode)."""

    def __init__(self, coef):
        self.coef = np.asarray(coef, dtype=np.float64)

    @classmethod
    def fit(cls, configs, steps, space):
        x = np.stack([np.append(1.0, hat_features(c, space)) for c in configs])
        coef, *_ = np.linalg.lstsq(x, np.asarray(steps, float), rcond=None)
        return cls(coef)

    def predict(self, configs, space):
        x = np.stack([np.append(1.0, hat_features(c, space)) for c in configs])
        return np.maximum(x @ self.coef, 1.0)


# -- the predictor --------------------------------------------------------------------------


class LatencyPredictor:
    """Predicted latency (ms) of sub-networks at a measured thread count."""

    def __init__(self, space: DesignSpace, models: dict, steps_model: StepsModel, meta=None):
        self.space, self.models, self.steps_model = space, dict(models), steps_model
        self.meta = dict(meta or {})

    @property
    def threads(self) -> list[int]:
        return sorted(self.models)

    def _model(self, threads):
        if threads not in self.models:
            raise ValueError(f'threads: no predictor for {threads!r} thread(s); fitted for '
                             f'{self.threads}')
        return self.models[threads]

    def predict_steps(self, configs) -> np.ndarray:
        return self.steps_model.predict(list(configs), self.space)

    def predict(self, configs, threads, steps=None) -> np.ndarray:
        """Latency in ms of each config; ``steps`` None: predicted decoder steps."""
        configs = list(configs)
        if not configs:
            return np.zeros(0)
        for c in configs:
            self.space.validate(c)
        model = self._model(threads)
        steps = self.predict_steps(configs) if steps is None else np.asarray(steps, float)
        x = feature_matrix(model.features, configs, self.space, steps)
        return np.maximum(model.predict(x), 1e-6)

    def predict_one(self, cfg: SubnetConfig, threads, steps=None) -> float:
        return float(self.predict([cfg], threads, None if steps is None else [steps])[0])

    def save(self, path):
        tensors, models = {}, {}
        for threads, model in self.models.items():
            arrays, meta = model.state()
            tensors.update({f't{threads}.{k}': torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in arrays.items()})
            models[str(threads)] = {'kind': model.kind, **meta}
        tensors['steps.coef'] = torch.from_numpy(self.steps_model.coef)
        header = {'format': FORMAT, 'space': self.space.to_dict(), 'models': models,
                  'meta': self.meta}
        data = safetensors_bytes(tensors, metadata={HEADER_KEY: json.dumps(header)})
        write_atomic(path, data)

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f'latency predictor {path} does not exist')
        try:
            with safe_open(str(path), framework='numpy') as f:
                header = json.loads((f.metadata() or {}).get(HEADER_KEY, 'null'))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors raises its own types for corrupt files
            raise ValueError(f'{path}: not a readable predictor file: {err}') from None
        if not isinstance(header, dict) or header.get('format') != FORMAT:
            raise ValueError(f'{path}: not a latency predictor (format '
                             f'{header.get("format") if isinstance(header, dict) else None!r}, '
                             f'expected {FORMAT!r})')
        try:
            space = DesignSpace.from_dict(header['space'], source=f'{path} design space')
            models = {}
            for threads, meta in header['models'].items():
                prefix = f't{threads}.'
                arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                models[int(threads)] = MODEL_CLASSES[meta['kind']].from_state(arrays, meta)
            steps = StepsModel(tensors['steps.coef'])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f'{path}: corrupt predictor: {err!r}') from None
        return cls(space, models, steps, header.get('meta'))


# -- fitting ---------------------------------------------------------------------------------


@dataclass
class FitReport:
    """Held-out errors per thread count and model: ``test[threads][name] = errors(...)``."""

    chosen: dict = field(default_factory=dict)  # threads -> kind
    valid_mape: dict = field(default_factory=dict)  # threads -> kind -> MAPE %
    test: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)  # errors of the steps model on the test configs
    train_configs: int = 0
    test_configs: int = 0

    def to_dict(self):
        return asdict(self)


def _split(keys, fraction, seed):
    keys = sorted(keys)
    random.Random(seed).shuffle(keys)
    cut = max(1, round(len(keys) * fraction))
    return set(keys[cut:]), set(keys[:cut])


def dataset_by_threads(rows):
    """``{threads: {key: row}}`` of a latency dataset measured with one beam and workload."""
    if not rows:
        raise ValueError('latency dataset: no rows')
    kinds = {(r.device, r.workload, r.beam_json) for r in rows}
    if len(kinds) > 1:
        raise ValueError(f'latency dataset: rows mix devices/workloads/beams {sorted(kinds)}; '
                         'fit one predictor per combination')
    table = {}
    for row in rows:
        table.setdefault(row.threads, {})[row.key] = row
    return table


def fit_predictor(rows, space: DesignSpace,
                  config: PredictorConfig = PredictorConfig()) -> tuple:
    """Fit per-thread-count predictors to latency rows; ``(LatencyPredictor, FitReport)``."""
    table = dataset_by_threads(rows)
    for row in rows:
        space.validate(row.config)
    keys = set().union(*(set(t) for t in table.values()))
    if len(keys) < 5:
        raise ValueError(f'latency dataset: {len(keys)} configs, need at least 5 to fit and '
                         'test a predictor')
    train_keys, test_keys = _split(keys, config.test_fraction, config.seed)
    fit_keys, valid_keys = _split(train_keys, config.valid_fraction, config.seed + 1)
    report = FitReport(train_configs=len(train_keys), test_configs=len(test_keys))

    def arrays(by_key, wanted, features):
        chosen = [by_key[k] for k in sorted(wanted) if k in by_key]
        configs = [r.config for r in chosen]
        x = feature_matrix(features, configs, space, [r.decoder_steps for r in chosen])
        return x, np.array([r.latency_ms for r in chosen])

    models = {}
    for threads, by_key in sorted(table.items()):
        valid = {}
        for kind in config.kinds:
            features = 'cost' if kind == 'additive' else 'mlp'
            model = _fit(kind, *arrays(by_key, fit_keys, features), config)
            x, y = arrays(by_key, valid_keys, features)
            valid[kind] = errors(model.predict(x), y)['mape']
        chosen = min(valid, key=valid.get)
        report.valid_mape[threads], report.chosen[threads] = valid, chosen
        report.test[threads] = {}
        for kind in config.kinds:
            features = 'cost' if kind == 'additive' else 'mlp'
            model = _fit(kind, *arrays(by_key, train_keys, features), config)
            x, y = arrays(by_key, test_keys, features)
            report.test[threads][kind] = errors(model.predict(x), y)
            if kind == chosen:
                models[threads] = model
        if config.hat_baseline:
            hat = MLPModel.fit(*arrays(by_key, train_keys, 'hat'), config, features='hat',
                               target='scaled', hidden=config.hat_hidden,
                               layers=config.hat_layers)
            x, y = arrays(by_key, test_keys, 'hat')
            report.test[threads]['hat'] = errors(hat.predict(x), y)

    # Steps are a property of the config (the model's outputs), whatever the thread count.
    steps_of = {}
    for by_key in table.values():
        for key, row in by_key.items():
            steps_of.setdefault(key, (row.config, []))[1].append(row.decoder_steps)
    train = [steps_of[k] for k in sorted(train_keys)]
    steps_model = StepsModel.fit([c for c, _ in train], [np.mean(s) for _, s in train], space)
    test = [steps_of[k] for k in sorted(test_keys)]
    report.steps = errors(steps_model.predict([c for c, _ in test], space),
                          [np.mean(s) for _, s in test])

    any_row = rows[0]
    meta = {'device': any_row.device, 'workload': any_row.workload,
            'beam': BeamPolicy.from_dict(json.loads(any_row.beam_json)).to_dict(),
            'host': any_row.host, 'torch_version': any_row.torch_version,
            'config': asdict(config), 'report': report.to_dict()}
    return LatencyPredictor(space, models, steps_model, meta), report
