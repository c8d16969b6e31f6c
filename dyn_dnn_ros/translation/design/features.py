"""Latency features of a sub-network: per-layer sizes, per-layer cost terms and HAT's averages.

Three views of one config, for three predictors:

* ``cost_terms``: FLOP-like terms summed over layers, one per kind of work,
  for the additive model ``latency = sum_k c_k * term_k`` with ``c_k >= 0``.
  A layer's cost depends only on its own sizes, so one coefficient per kind
  of work describes every layer; the workload (beam width, source lengths) is
  the same for every row, so it folds into the coefficients. ``steps`` is the
  number of decoder steps: per-step work is multiplied by it.
* ``mlp_features``: every layer's sizes, zero-padded for absent layers
  (encoder: embed, ffn, heads; decoder: embed, ffn, self heads, cross heads,
  ende), plus the cost terms.
* ``hat_features``: HAT's ten averaged features (Wang et al. 2020, Sec. 3.3),
  plus the decoder steps so that the comparison isolates the feature design.
"""

import numpy as np

from dyn_dnn_ros.translation.design_space import MAX_ENDE, DesignSpace, SubnetConfig

COST_TERMS = (
    'constant',
    'enc_layers',  # per-layer overhead (norms, residuals, kernel launches)
    'enc_embed',  # embedding, positions, final norm
    'enc_attn_proj',  # q, k, v, out projections: embed x heads x head_dim
    'enc_attn_scores',  # scores and weighted sum over the source: heads x head_dim
    'enc_ffn',  # embed x ffn
    'cross_kv',  # decoder keys/values of the encoder memory, once per sentence
    'steps',  # per-step overhead: search bookkeeping, embedding
    'step_output',  # steps x decoder embed (output projection onto the vocabulary)
    'step_layers',  # steps x decoder layers
    'step_self_proj',  # steps x embed x self heads x head_dim
    'step_cross_proj',  # steps x embed x cross heads x head_dim (queries, out)
    'step_ffn',  # steps x embed x ffn
    'step_self_attn',  # the cache grows by one per step: steps^2 / 2 x heads x head_dim
    'step_cross_attn',  # steps x heads x head_dim x ende (memory length)
)
HAT_FEATURES = (
    'encoder_embed_dim', 'encoder_layers', 'encoder_ffn_avg', 'encoder_heads_avg',
    'decoder_embed_dim', 'decoder_layers', 'decoder_ffn_avg', 'decoder_self_heads_avg',
    'decoder_cross_heads_avg', 'decoder_ende_avg',
)


def cost_terms(cfg: SubnetConfig, space: DesignSpace, steps: float) -> np.ndarray:
    hd = space.head_dim
    e, d, t = cfg.encoder_embed_dim, cfg.decoder_embed_dim, float(steps)
    enc = list(zip(cfg.encoder_ffn, cfg.encoder_heads, strict=True))
    dec = list(zip(cfg.decoder_ffn, cfg.decoder_self_heads, cfg.decoder_cross_heads,
                   cfg.decoder_ende, strict=True))
    return np.array([
        1.0,
        len(enc),
        e,
        sum(e * h * hd for _, h in enc),
        sum(h * hd for _, h in enc),
        sum(e * f for f, _ in enc),
        sum(e * hc * hd * n for _, _, hc, n in dec),
        t,
        t * d,
        t * len(dec),
        t * sum(d * hs * hd for _, hs, _, _ in dec),
        t * sum(d * hc * hd for _, _, hc, _ in dec),
        t * sum(d * f for f, _, _, _ in dec),
        t * t / 2 * sum(hs * hd for _, hs, _, _ in dec),
        t * sum(hc * hd * n for _, _, hc, n in dec),
    ], dtype=np.float64)


def layer_features(cfg: SubnetConfig, space: DesignSpace) -> np.ndarray:
    """Per-layer sizes scaled to [0, 1] by the largest choices; absent layers are zeros."""
    emax, dmax = space.encoder_embed_dim[-1], space.decoder_embed_dim[-1]
    fmax, hmax = space.ffn_dim[-1], space.heads[-1]
    values = []
    for i in range(space.encoder_layers[-1]):
        if i < cfg.encoder_layers:
            values += [1.0, cfg.encoder_embed_dim / emax, cfg.encoder_ffn[i] / fmax,
                       cfg.encoder_heads[i] / hmax]
        else:
            values += [0.0] * 4
    for j in range(space.decoder_layers[-1]):
        if j < cfg.decoder_layers:
            values += [1.0, cfg.decoder_embed_dim / dmax, cfg.decoder_ffn[j] / fmax,
                       cfg.decoder_self_heads[j] / hmax, cfg.decoder_cross_heads[j] / hmax,
                       cfg.decoder_ende[j] / MAX_ENDE]
        else:
            values += [0.0] * 6
    return np.array(values, dtype=np.float64)


def mlp_features(cfg: SubnetConfig, space: DesignSpace, steps: float) -> np.ndarray:
    return np.concatenate([layer_features(cfg, space), cost_terms(cfg, space, steps)[1:]])


def hat_features(cfg: SubnetConfig, space: DesignSpace) -> np.ndarray:
    """HAT's averaged features, each divided by its largest value in ``space`` (as HAT does)."""
    def mean(values):
        return sum(values) / len(values)

    raw = [cfg.encoder_embed_dim, cfg.encoder_layers, mean(cfg.encoder_ffn),
           mean(cfg.encoder_heads), cfg.decoder_embed_dim, cfg.decoder_layers,
           mean(cfg.decoder_ffn), mean(cfg.decoder_self_heads), mean(cfg.decoder_cross_heads),
           mean(cfg.decoder_ende)]
    norm = [space.encoder_embed_dim[-1], space.encoder_layers[-1], space.ffn_dim[-1],
            space.heads[-1], space.decoder_embed_dim[-1], space.decoder_layers[-1],
            space.ffn_dim[-1], space.heads[-1], space.heads[-1], space.ende[-1]]
    return np.array([r / n for r, n in zip(raw, norm, strict=True)], dtype=np.float64)


FEATURE_SETS = ('cost', 'mlp', 'hat')


def feature_matrix(kind, configs, space: DesignSpace, steps) -> np.ndarray:
    """Rows of features of one kind; ``steps`` gives each config's decoder steps."""
    if kind == 'cost':
        rows = [cost_terms(c, space, s) for c, s in zip(configs, steps, strict=True)]
    elif kind == 'mlp':
        rows = [mlp_features(c, space, s) for c, s in zip(configs, steps, strict=True)]
    elif kind == 'hat':
        rows = [np.append(hat_features(c, space), s) for c, s in zip(configs, steps, strict=True)]
    else:
        raise ValueError(f'features: must be one of {FEATURE_SETS}, got {kind!r}')
    return np.stack(rows) if rows else np.zeros((0, 0))
