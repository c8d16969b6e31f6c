"""``dyn-dnn-ros translation calibrate-beam``: dynamic beam thresholds from validation decoding.

Decodes validation sentences at the fixed width ``bw_max``, collects the
spread of the candidate scores at every step (both metrics) and turns
percentile pairs of those distributions into candidate policies; the paper's
pair is the 5th and 50th percentile of ``std``. With ``--evaluate N`` every
candidate is also scored (BLEU, average width, decoder steps, time) on the N
sentences that follow the calibration sentences in the split: held out, so a
policy is not judged on the sentences its thresholds came from.
"""

from dataclasses import dataclass
from pathlib import Path
import sys

from dyn_dnn_ros.commands.evaluate import DEFAULT_CORPUS_DIR
from dyn_dnn_ros.commands.translate import (
    add_model_arguments,
    add_subnet_arguments,
    load_translator,
    model_options,
    operating_point,
)

HELP = 'propose dynamic beam-width thresholds from validation data'
SUMMARY_PERCENTILES = (5, 10, 25, 50, 75, 90, 95)


@dataclass(frozen=True)
class CalibrationOptions:
    split: str
    limit: int
    bw_min: int
    bw_max: int
    percentiles: tuple
    evaluate: int


def _percentile_pair(text):
    try:
        low, high = (float(part) for part in text.split(':'))
    except ValueError:
        raise ValueError(f'--percentiles: {text!r} is not LOW:HIGH, e.g. 5:50') from None
    return low, high


def add_arguments(parser):
    from dyn_dnn_ros.translation.beam_policy import CANDIDATE_PERCENTILES
    parser.add_argument('--split', choices=('valid', 'test'), default='valid',
                        help='split to calibrate on (default: %(default)s)')
    parser.add_argument('--limit', type=int, default=500, metavar='N',
                        help='sentences decoded to collect the spreads (default: %(default)s)')
    parser.add_argument('--corpus-dir', type=Path, default=DEFAULT_CORPUS_DIR)
    parser.add_argument('--bw-min', type=int, default=1, help='narrowest beam (default: 1)')
    parser.add_argument('--bw-max', type=int, default=5,
                        help='widest beam, also the calibration width (default: 5)')
    parser.add_argument('--percentiles', nargs='+', metavar='LOW:HIGH',
                        default=[f'{lo:g}:{hi:g}' for lo, hi in CANDIDATE_PERCENTILES],
                        help='percentile pairs turned into sigma_min:sigma_max '
                             '(default: %(default)s)')
    parser.add_argument('--evaluate', type=int, default=0, metavar='N',
                        help='also score each candidate on the N sentences after the '
                             '--limit calibration sentences (0: no)')
    add_model_arguments(parser)
    add_subnet_arguments(parser)


def run(args) -> int:
    import numpy as np

    from dyn_dnn_ros.translation.beam_policy import PAPER_PERCENTILES, BeamPolicy, calibrate
    from dyn_dnn_ros.translation.translator import read_split
    from dyn_dnn_ros.validation import require_int
    try:
        options = CalibrationOptions(
            split=args.split, limit=args.limit, bw_min=args.bw_min, bw_max=args.bw_max,
            percentiles=tuple(_percentile_pair(p) for p in args.percentiles),
            evaluate=args.evaluate)
        require_int('--evaluate', options.evaluate, 0)
        BeamPolicy(mode='dynamic', bw_min=options.bw_min, bw_max=options.bw_max,
                   sigma_min=0.0, sigma_max=1.0)  # validates the widths, naming them
        point = operating_point(args)
        subnet_spec = args.subnet or (point.subnet if point is not None else 'largest')
        sources, references = read_split(args.corpus_dir, options.split,
                                         options.limit + options.evaluate)
        held_out = sources[options.limit:], references[options.limit:]
        sources = sources[:options.limit]
        if options.evaluate and not held_out[0]:
            raise ValueError(f'--evaluate: the {options.split} split has no sentences after '
                             f'the {len(sources)} used for calibration (--limit)')
        translator = load_translator(model_options(args))
        subnet = translator.subnet(subnet_spec)
        values = translator.step_metrics(sources, subnet, options.bw_max, progress=True)
        candidates = calibrate(values, options.bw_min, options.bw_max, options.percentiles)
    except ValueError as err:
        print(f'dyn-dnn-ros calibrate-beam: {err}', file=sys.stderr)
        return 2

    print(f'{len(values["std"])} decoding steps of {len(sources)} {options.split} sentences at '
          f'fixed width {options.bw_max}, sub-network {subnet.key()}')
    print('metric ' + ''.join(f'{f"p{p}":>8}' for p in SUMMARY_PERCENTILES))
    for metric, metric_values in values.items():
        row = np.percentile(metric_values, SUMMARY_PERCENTILES)
        print(f'{metric:<7}' + ''.join(f'{v:8.3f}' for v in row))
    print()

    rows = [(f'fixed {options.bw_max}', None, BeamPolicy(mode='fixed', width=options.bw_max)),
            (f'fixed {options.bw_min}', None, BeamPolicy(mode='fixed', width=options.bw_min))]
    rows += [(c.label, c, c.policy) for c in candidates]
    header = f'{"setting":<18}{"sigma_min":>10}{"sigma_max":>10}'
    if options.evaluate:
        header += f'{"BLEU":>8}{"avg width":>11}{"steps":>8}{"time s":>9}'
    print(header)
    for label, candidate, policy in rows:
        line = f'{label:<18}'
        if candidate is None:
            line += f'{"-":>10}{"-":>10}'
        else:
            line += f'{policy.sigma_min:10.3f}{policy.sigma_max:10.3f}'
        if options.evaluate:
            result = translator.evaluate(*held_out, subnet, policy)
            line += (f'{result.bleu:8.2f}{result.avg_width:11.2f}{result.decoder_steps:8d}'
                     f'{result.seconds:9.2f}')
        print(line, flush=True)

    paper = [c for c in candidates
             if c.metric == 'std' and (c.low_percentile, c.high_percentile) == PAPER_PERCENTILES]
    if paper:
        p = paper[0].policy
        print(f'\nproposed (paper: std, p{PAPER_PERCENTILES[0]:g}/p{PAPER_PERCENTILES[1]:g}): '
              f'--beam-policy dynamic --metric std --bw-min {p.bw_min} --bw-max {p.bw_max} '
              f'--sigma-min {p.sigma_min:.4f} --sigma-max {p.sigma_max:.4f}')
    return 0
