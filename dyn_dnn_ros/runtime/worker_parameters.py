"""The worker parameters the manager sets, named once for the manager and the workers.

The workers declare these parameters; the manager puts a decision in force by
setting them on a worker in one atomic parameter set. Both sides import the
names from here, so a renamed parameter cannot leave the manager setting one
the worker no longer has.
"""

import math

OPERATING_POINT = 'operating_point'
THREADS = 'threads'
BUDGET_MS = 'budget_ms'

# The translation worker's beam policy (checked as a whole in every mode).
BEAM_MODE = 'beam_mode'
BEAM_WIDTH = 'beam_width'
BW_MIN = 'bw_min'
BW_MAX = 'bw_max'
SIGMA_MIN = 'sigma_min'
SIGMA_MAX = 'sigma_max'
BEAM_METRIC = 'beam_metric'
BEAM_PARAMETERS = (BEAM_MODE, BEAM_WIDTH, BW_MIN, BW_MAX, SIGMA_MIN, SIGMA_MAX, BEAM_METRIC)


def parameter_values(decision, point, budget_ms):
    """The worker parameters that put ``decision`` in force, by name.

    ``point`` is the library's operating point ``decision.point``: its beam
    policy, if it has one, is set with it. A budget that is not finite (none
    set) is sent as the workers' 0, which means no budget.
    """
    values = {OPERATING_POINT: decision.point, THREADS: decision.threads,
              BUDGET_MS: float(budget_ms) if math.isfinite(budget_ms) else 0.0}
    if point.beam is not None:
        beam = point.beam
        values[BEAM_MODE] = beam.mode
        if beam.mode == 'fixed':
            values[BEAM_WIDTH] = beam.width
        else:
            values.update({BW_MIN: beam.bw_min, BW_MAX: beam.bw_max,
                           SIGMA_MIN: float(beam.sigma_min), SIGMA_MAX: float(beam.sigma_max),
                           BEAM_METRIC: beam.metric})
    return values
