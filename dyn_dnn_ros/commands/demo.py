"""``dyn-dnn-ros demo``: the adaptation demo, dynamic operating points vs a static model.

Starts the system in this process, sends test-split sentences at a steady
rate for ``--duration`` seconds while the budget changes through the
manager's service and a real CPU-burning process takes a core away, then
runs the same scenario with the best point fixed. Prints a table, saves a
timeline PNG and a JSON report.
"""

import json
import math
import os
from pathlib import Path
import sys

from dyn_dnn_ros.share import runs_path


def add_arguments(parser):
    parser.add_argument('--library', help='translation operating-point library (default: '
                        'config/generated/operating_points_translation_cpu.yaml)')
    parser.add_argument('--model', default='', help='SuperTransformer file (default: shipped)')
    parser.add_argument('--spm', default='', help='SentencePiece model (default: shipped)')
    parser.add_argument('--corpus-dir', help='folder with test.en/test.de (default: '
                        'data/corpus)')
    parser.add_argument('--duration', type=float, default=100.0,
                        help='seconds per run (default: %(default)s)')
    parser.add_argument('--rate', type=float, default=None,
                        help='requests per second (default: from the library)')
    parser.add_argument('--runs', default='dynamic,static',
                        help='runs to make, in order (default: %(default)s)')
    parser.add_argument('--calibrate', type=int, default=30, metavar='N',
                        help='plan the budgets from the 90th percentile of per-request latency '
                        'of every point measured on N of the demo\'s sentences first (0: '
                        'from the library\'s latencies; default: %(default)s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of the worker (default: all allowed CPUs)')
    parser.add_argument('--out-dir', default=runs_path('demo'), type=Path,
                        help='where the PNG and JSON go (default: %(default)s)')
    parser.add_argument('--report', help='JSON summary path (default: OUT_DIR/report.json)')
    parser.add_argument('--plot', help='timeline PNG path (default: OUT_DIR/timeline.png)')


def _progress(mode, t, duration, sent, answered, setting, burning):
    line = (f'\r[{mode:7}] {t:5.1f}/{duration:.0f} s  sent {sent:4d}  answered {answered:4d}  '
            f'point {setting.point:>12}  threads {setting.threads}  '
            f'budget {setting.budget_ms:6.0f} ms  {"CPU burner ON " if burning else " " * 14}')
    print(line, end='', file=sys.stderr, flush=True)


def format_table(summaries):
    """Outcomes as fractions of the requests sent, and the quality of the answers."""
    rows = [('run', 'complete in budget', 'under load', 'cut at deadline', 'late', 'dropped',
             'BLEU complete', 'BLEU all', 'switches', 'mean response')]
    for name, s in summaries.items():
        rows.append((name, f'{s["complete_in_budget"]:.1%}',
                     f'{s.get("complete_in_budget_under_load", math.nan):.1%}',
                     f'{s["cut_at_deadline"]:.1%}', f'{s["late"]:.1%}', f'{s["dropped"]:.1%}',
                     f'{s["bleu_complete"]:.2f}', f'{s["bleu_all"]:.2f}', str(s['switches']),
                     f'{s["mean_response_ms"]:.1f} ms'))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + ' |'
             for r in rows]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


def run(args):
    from dyn_dnn_ros.share import data_path
    from dyn_dnn_ros.share import library_path as shipped_library
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from dyn_dnn_ros.demo.metrics import adaptation_results, run_to_dict, summarize
    from dyn_dnn_ros.demo.plan import default_plan
    from dyn_dnn_ros.demo.plot import plot_timeline
    from dyn_dnn_ros.demo.runner import DemoConfig, default_threads, load_sentences, run_once
    from dyn_dnn_ros.operating_points import OperatingPointLibrary

    library_path = Path(args.library) if args.library else \
        shipped_library('translation', 'cpu')
    try:
        library = OperatingPointLibrary.load(library_path)
        threads = args.threads or default_threads()
        sentences = load_sentences(args.corpus_dir or data_path('corpus'))
        measured = None
        if args.calibrate > 0:
            from dyn_dnn_ros.demo.calibration import tail_latencies
            print(f'demo: timing every point on {args.calibrate} sentences at {threads} '
                  'thread(s) to plan the budgets', flush=True)
            measured = tail_latencies(library, [s for s, _ in sentences[:args.calibrate]],
                                      threads, model_path=args.model, spm_path=args.spm)
            print('demo: 90th percentile per request: ' + ', '.join(
                f'{name} {ms:.1f} ms' for name, ms in measured.items()), flush=True)
        plan = default_plan(library, threads, duration_s=args.duration,
                            request_rate_hz=args.rate, latency_ms=measured)
    except (ValueError, OSError) as error:
        print(f'demo: {error}', file=sys.stderr)
        return 2
    modes = [m.strip() for m in args.runs.split(',') if m.strip()]
    if not modes or any(m not in ('dynamic', 'static') for m in modes):
        print(f'demo: --runs takes dynamic and/or static, got {args.runs!r}', file=sys.stderr)
        return 2
    config = DemoConfig(plan=plan, library_path=str(library_path), sentences=sentences,
                        model_path=args.model, spm_path=args.spm, threads=threads)
    print(f'demo: {len(modes)} run(s) of {plan.duration_s:g} s, {plan.request_rate_hz:.2f} '
          f'requests/s, {threads} thread(s); events: ' +
          ', '.join(f'{e.at_s:g} s {e.describe()}' for e in plan.events), flush=True)

    records, summaries = [], {}
    burn = next((e.at_s for e in plan.events if e.kind == 'burn_start'), None)
    burn_end = next((e.at_s for e in plan.events if e.kind == 'burn_stop'), plan.duration_s)
    for mode in modes:
        record = run_once(mode, config, progress=_progress)
        print(file=sys.stderr)
        records.append(record)
        summary = summarize(record, (burn, burn_end) if burn is not None else None)
        summary['adaptation_results'] = adaptation_results(
            record, [e.at_s for e in plan.events])
        summaries[mode] = summary

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_path = Path(args.plot) if args.plot else out_dir / 'timeline.png'
    report_path = Path(args.report) if args.report else out_dir / 'report.json'
    plot_timeline(plot_path, records, plan, library)
    report = {'plan': {'duration_s': plan.duration_s, 'request_rate_hz': plan.request_rate_hz,
                       'threads': threads, 'calibrated_p90_ms': measured,
                       'events': [(e.at_s, e.describe()) for e in plan.events]},
              'library': str(library_path), 'summaries': summaries,
              'runs': [run_to_dict(r) for r in records]}
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1, default=str))
    print(format_table(summaries))
    for mode, s in summaries.items():
        print(f'{mode}: results until 3 in a row are on time after each event '
              f'{s["adaptation_results"]}, '
              f'switch call to first new-point result p50 {s["switch_to_result_ms_p50"]:.1f} '
              f'ms, max {s["switch_to_result_ms_max"]:.1f} ms (+ one inference), DDS '
              f'overhead p50 {s["dds_overhead_p50_ms"]:.2f} ms ({s["transport_p50_ms"]:.2f} ms '
              f'without queueing), {s["cut_count"]} cut at the deadline, '
              f'points used {", ".join(s["points_used"])}')
    print(f'timeline: {plot_path}\nreport: {report_path}')
    return 0
