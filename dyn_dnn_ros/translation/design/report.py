"""Which design-space choices the optimal sub-networks use, and the space reduced to them.

Parry et al. (Sec. 4) shrink the design space to the choices the searched
sub-networks actually pick, which makes the next SuperTransformer cheaper to
train. The per-layer dimensions pool their roles: ``ffn_dim`` counts encoder
and decoder layers, ``heads`` encoder, decoder self- and cross-attention;
the roles are also listed one by one.
"""

from collections import Counter

import yaml

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig

# space dimension -> the subnet fields whose values are its choices
SOURCES = {
    'encoder_embed_dim': ('encoder_embed_dim',),
    'decoder_embed_dim': ('decoder_embed_dim',),
    'ffn_dim': ('encoder_ffn', 'decoder_ffn'),
    'heads': ('encoder_heads', 'decoder_self_heads', 'decoder_cross_heads'),
    'encoder_layers': ('encoder_layers',),
    'decoder_layers': ('decoder_layers',),
    'ende': ('decoder_ende',),
}


def _values(cfg, field):
    value = getattr(cfg, field)
    return list(value) if isinstance(value, tuple) else [value]


def choice_usage(library, space: DesignSpace) -> dict:
    """``{dimension: {'used': Counter, 'unused': [...], 'roles': {field: Counter}}}``."""
    configs = []
    for point in library.points:
        try:
            configs.append(space.validate(SubnetConfig.from_dict(point.subnet)))
        except (TypeError, ValueError) as err:
            raise ValueError(f'library point {point.name}: sub-network outside the design '
                             f'space: {err}') from None
    usage = {}
    for dim, fields in SOURCES.items():
        roles = {f: Counter(v for c in configs for v in _values(c, f)) for f in fields}
        used = sum(roles.values(), Counter())
        usage[dim] = {'used': used, 'roles': roles,
                      'unused': [c for c in getattr(space, dim) if c not in used]}
    return usage


def reduced_space(space: DesignSpace, usage) -> DesignSpace:
    """``space`` keeping only the used choices (head_dim and max_positions unchanged)."""
    data = space.to_dict()
    for dim, entry in usage.items():
        data[dim] = sorted(entry['used'])
    return DesignSpace.from_dict(data, source='reduced design space')


def format_usage(usage, points) -> str:
    lines = [f'choices used by the {points} library points (count of uses):']
    for dim, entry in usage.items():
        used = ', '.join(f'{c} x{n}' for c, n in sorted(entry['used'].items()))
        unused = ', '.join(str(c) for c in entry['unused']) or '-'
        lines.append(f'  {dim:<18} used: {used:<40} never: {unused}')
        if len(entry['roles']) > 1:
            for field, counts in entry['roles'].items():
                lines.append(f'    {field:<20} ' + ', '.join(
                    f'{c} x{n}' for c, n in sorted(counts.items())))
    return '\n'.join(lines)


def write_reduced_space(path, space: DesignSpace, source):
    header = (f'# Design space reduced to the choices used by the operating points of\n'
              f'# {source} (dyn-dnn-ros design-report).\n')
    text = header + yaml.safe_dump(space.to_dict(), sort_keys=False, default_flow_style=None)
    write_atomic(path, text.encode())
