"""The demo's timeline: latency against budget, operating point, availability."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from dyn_dnn_ros.demo.metrics import ANSWERED  # noqa: E402


def plot_timeline(path, runs, plan, library):
    """One PNG, three panels sharing the time axis; every run overlaid."""
    order = [p.name for p in sorted(library.points, key=lambda p: p.quality)]
    fig, (ax_lat, ax_point, ax_res) = plt.subplots(
        3, 1, figsize=(11, 8.5), sharex=True, gridspec_kw={'height_ratios': [3, 2, 1.4]})
    colours = {'dynamic': 'tab:blue', 'static': 'tab:red'}
    budget_t = [0.0]
    budget_v = [plan.events[0].value]
    for event in plan.events[1:]:
        if event.kind == 'budget':
            budget_t += [event.at_s, event.at_s]
            budget_v += [budget_v[-1], event.value]
    budget_t.append(plan.duration_s)
    budget_v.append(budget_v[-1])
    ax_lat.plot(budget_t, budget_v, color='black', lw=1.5, label='budget')
    for run in runs:
        colour = colours.get(run.name, 'tab:green')
        answered = [r for r in run.results if r.status in ANSWERED]
        ax_lat.scatter([r.sent_s for r in answered], [r.response_ms for r in answered],
                       s=10, color=colour, alpha=0.7, label=f'{run.name}: response time')
        cut = [r for r in run.results if r.status == 'partial']
        if cut:   # answered in time, but incomplete: marked apart from complete answers
            ax_lat.scatter([r.sent_s for r in cut], [r.response_ms for r in cut], s=16,
                           marker='v', facecolors='none', edgecolors=colour,
                           label=f'{run.name}: cut at the deadline')
        dropped = [r for r in run.results if r.status in ('dropped', 'lost')]
        if dropped:
            top = max([r.response_ms for r in answered] + budget_v) * 1.05
            ax_lat.scatter([r.sent_s for r in dropped], [top] * len(dropped), marker='x',
                           s=14, color=colour, label=f'{run.name}: dropped / unanswered')
        ax_point.step([r.sent_s for r in answered],
                      [order.index(r.point) if r.point in order else -1 for r in answered],
                      where='post', color=colour, label=run.name)
        if run.availability:
            t, threads, _ = zip(*run.availability, strict=True)
            ax_res.step(t, threads, where='post', color=colour, label=f'{run.name}')
    for event in plan.events[1:]:
        for ax in (ax_lat, ax_point, ax_res):
            ax.axvline(event.at_s, color='grey', ls=':', lw=1)
        ax_lat.annotate(event.describe(), (event.at_s, 1.0), xycoords=('data', 'axes fraction'),
                        rotation=90, va='top', ha='right', fontsize=8, color='dimgrey')
    ax_lat.set_ylabel('ms (request to result)')
    ax_lat.set_yscale('log')
    ax_lat.legend(fontsize=8, loc='upper left', ncol=2)
    ax_lat.set_title('dyn_dnn_ros demo: dynamic operating points vs a static model')
    ax_point.set_yticks(range(len(order)), order, fontsize=7)
    ax_point.set_ylabel('operating point\n(quality ->)')
    ax_point.legend(fontsize=8, loc='lower left')
    ax_res.set_ylabel('usable threads')
    ax_res.set_xlabel('seconds')
    ax_res.legend(fontsize=8, loc='lower left')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
