"""``dyn-dnn-ros design latency``: time random sub-networks on this machine into a latency CSV."""

from pathlib import Path
import sys

from dyn_dnn_ros.share import data_path, runs_path

HELP = 'measure the latency dataset of random sub-networks'
RUN_DIR = runs_path('design')
DEFAULT_CORPUS_DIR = data_path('corpus')
DEFAULT_SAMPLES = {'cpu': 300, 'cuda': 1000}



def add_protocol_arguments(parser):
    """The workload and timing options; ``sweep`` must time winners exactly like the dataset."""
    from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol
    d = LatencyProtocol()
    parser.add_argument('--beam', type=int, default=d.beam,
                        help='deployment beam width (default: %(default)s)')
    parser.add_argument('--sentences', type=int, default=d.sentences, metavar='K',
                        help='fixed validation sentences translated per config '
                             '(default: %(default)s)')
    parser.add_argument('--sentence-seed', type=int, default=d.sentence_seed,
                        help='which K sentences (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=d.warmup,
                        help='untimed translations before every sample (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=d.repeats, metavar='R',
                        help='samples per config, one per round over all configs; the '
                             'fastest and slowest 10%% are dropped (default: %(default)s)')
    parser.add_argument('--lengths', choices=('reference', 'eos'), default='reference',
                        help='reference: decode as many tokens as each sentence\'s reference '
                             'translation, with every sub-network; eos: each sub-network stops '
                             'at its own EOS (default: %(default)s)')
    parser.add_argument('--fixed-length', type=int, default=None, metavar='N',
                        help='instead, decode exactly N steps with EOS forbidden (the paper\'s '
                             'protocol uses 30)')
    parser.add_argument('--probe-every', type=int, default=d.reference_every, metavar='N',
                        help='re-time the largest sub-network after every N samples of a thread '
                             'count and divide out the drift it shows; 0: off '
                             '(default: %(default)s)')


def protocol_from_args(args):
    from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol
    fixed = args.fixed_length is not None
    return LatencyProtocol(beam=args.beam, sentences=args.sentences,
                           sentence_seed=args.sentence_seed, warmup=args.warmup,
                           repeats=args.repeats, mode='fixed' if fixed else args.lengths,
                           fixed_length=args.fixed_length if fixed else 30,
                           reference_every=args.probe_every)


def add_arguments(parser):
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=None,
                        help=f'CSV to append to (default: {RUN_DIR}/latency_DEVICE.csv)')
    parser.add_argument('--samples', type=int, default=None,
                        help='sub-networks: the smallest, the largest and random ones '
                             f'(default: {DEFAULT_SAMPLES["cpu"]} on cpu, '
                             f'{DEFAULT_SAMPLES["cuda"]} on cuda, where each is cheaper)')
    parser.add_argument('--budget-minutes', type=float, default=None, metavar='M',
                        help='time about M minutes: the smallest and largest sub-networks are '
                             'timed first and the count chosen to fit, --samples being the '
                             'most (default: time exactly --samples)')
    parser.add_argument('--seed', type=int, default=1, help='sampling seed (default: 1)')
    parser.add_argument('--threads', type=int, nargs='+', default=None,
                        help='CPU thread counts to time at (default: 1..usable CPUs on cpu, '
                             'the usable CPUs on cuda)')
    parser.add_argument('--bias', type=Path, default=None,
                        help='YAML with per-device sampling weights, e.g. "cpu: '
                             '{decoder_layers: {5: 2, 6: 2}}" (default: uniform, as HAT)')
    parser.add_argument('--model', type=Path, default=None,
                        help='model file (default: the shipped supertransformer.safetensors)')
    parser.add_argument('--spm', type=Path, default=None, help='SentencePiece model')
    parser.add_argument('--corpus-dir', type=Path, default=DEFAULT_CORPUS_DIR,
                        help='folder with valid.en (default: %(default)s)')
    add_protocol_arguments(parser)


def run(args) -> int:
    import time

    from dyn_dnn_ros.translation.design.latency_dataset import (
        LatencyDatasetConfig,
        build_latency_dataset,
    )
    began = time.perf_counter()
    try:
        config = LatencyDatasetConfig(
            out=args.out or RUN_DIR / f'latency_{args.device}.csv', model_path=args.model,
            spm_path=args.spm, corpus_dir=args.corpus_dir, device=args.device,
            samples=args.samples or DEFAULT_SAMPLES.get(args.device, 300), seed=args.seed,
            threads=tuple(args.threads) if args.threads else None, bias_path=args.bias,
            protocol=protocol_from_args(args),
            budget_s=None if args.budget_minutes is None else args.budget_minutes * 60)
        rows = build_latency_dataset(config)
    except ValueError as err:
        print(f'dyn-dnn-ros latency: {err}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - began
    configs = {r.key for r in rows}
    print(f'{len(rows)} measurements of {len(configs)} sub-networks in {config.out} '
          f'({config.protocol.workload}, beam {config.protocol.beam}); this run took '
          f'{seconds:.1f} s')
    for threads in sorted({r.threads for r in rows}):
        ms = sorted(r.latency_ms for r in rows if r.threads == threads)
        steps = [r.decoder_steps for r in rows if r.threads == threads]
        print(f'  {threads} thread(s): {ms[0]:.1f} .. {ms[-1]:.1f} ms per sentence '
              f'(x{ms[-1] / ms[0]:.2f}), mean decoder steps {sum(steps) / len(steps):.1f}')
    return 0
