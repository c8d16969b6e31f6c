"""Interim translation operating-point library: a measured ladder of sub-networks.

The real library comes from the design-time pipeline (``dyn-dnn-ros latency``,
``predictor``, ``sweep``: evolutionary search and a measured Pareto front,
about 70 minutes on an idle 2-core machine). Until that has been run on the
trained model, the run-time system uses this one: the design space's ladder of
sub-networks (``design_space.ladder``: smallest to largest, every dimension
growing together), each with fixed beams (joint sub-network + beam points),
measured for real at every thread count with the latency dataset's protocol,
scored by BLEU on test sentences, and kept when on the (latency, BLEU) front.

    .venv/bin/python bench/interim_library.py --limit 300
"""

import argparse
import datetime
import platform
import socket
import sys

import torch
from tqdm import tqdm

from dyn_dnn_ros.design.latency_dataset import (
    LatencyProtocol,
    source_tensors,
    time_subnet,
    usable_cpus,
    workload_sources,
)
from dyn_dnn_ros.design.sweep import pareto_front
from dyn_dnn_ros.operating_points import BeamPolicy, OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.share import config_path, share_dir
from dyn_dnn_ros.translation.design_space import ladder
from dyn_dnn_ros.translation.translator import Translator, read_split


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', help='SuperTransformer (default: shipped)')
    parser.add_argument('--spm', help='SentencePiece model (default: shipped)')
    parser.add_argument('--steps', type=int, default=6, help='ladder steps (default: 6)')
    parser.add_argument('--beams', type=int, nargs='+', default=[5, 1],
                        help='fixed beam widths to pair with each sub-network')
    parser.add_argument('--limit', type=int, default=300, help='test sentences for BLEU')
    parser.add_argument('--sentences', type=int, default=3,
                        help='validation sentences per latency measurement')
    parser.add_argument('--repeats', type=int, default=7, help='timed repeats per sentence')
    parser.add_argument('--out', default=str(config_path('operating_points_cpu.yaml')))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    translator = Translator.load(args.model, args.spm)
    model, tokenizer = translator.model, translator.tokenizer
    corpus = share_dir() / 'data' / 'corpus'
    sources, references = read_split(corpus, 'test', args.limit)
    workload = source_tensors(model, workload_sources(
        corpus, tokenizer, args.sentences, 0, model.space.max_positions), translator.device)
    thread_counts = list(range(1, usable_cpus() + 1))
    candidates = []
    jobs = [(cfg, beam) for cfg in ladder(model.space, args.steps) for beam in args.beams]
    for cfg, beam in tqdm(jobs, desc='sub-network x beam', unit='point'):
        protocol = LatencyProtocol(beam=beam, sentences=args.sentences, repeats=args.repeats)
        latency = {t: time_subnet(model, cfg, workload, protocol, t).latency_ms
                   for t in thread_counts}
        torch.set_num_threads(thread_counts[-1])
        bleu = translator.evaluate(sources, references, subnet=cfg,
                                   beam=BeamPolicy('fixed', width=beam)).bleu
        candidates.append((cfg, beam, latency, bleu))
    front = pareto_front(candidates, latency=lambda c: c[2][thread_counts[-1]],
                         quality=lambda c: c[3])
    points = [OperatingPoint(
        name=f'd{cfg.decoder_layers}_e{cfg.encoder_embed_dim}_b{beam}', target='translation',
        subnet=cfg.to_dict(), latency_ms=latency, quality=round(bleu, 2),
        beam=BeamPolicy('fixed', width=beam),
        metrics={'params': model.count_parameters(cfg), 'bleu_sentences': len(sources)})
        for cfg, beam, latency, bleu in front]
    library = OperatingPointLibrary('translation', 'cpu', 'bleu', points, meta={
        'source': 'interim ladder (bench/interim_library.py); replace with dyn-dnn-ros sweep',
        'command': ' '.join([sys.executable, *sys.argv]), 'host': socket.gethostname(),
        'cpu': platform.processor() or platform.machine(), 'torch': str(torch.__version__),
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'latency_protocol': f'batch 1, {args.sentences} validation sentences, EOS-stopped, '
                            f'{args.repeats} repeats, 10 % trimmed each side'})
    library.save(args.out)
    print(f'{len(candidates)} candidates measured, {len(points)} on the front -> {args.out}')
    for point in points:
        print(f'  {point.name:16} BLEU {point.quality:6.2f}  ' + '  '.join(
            f'{t} thr {ms:7.1f} ms' for t, ms in sorted(point.latency_ms.items())))
    return 0


if __name__ == '__main__':
    sys.exit(main())
