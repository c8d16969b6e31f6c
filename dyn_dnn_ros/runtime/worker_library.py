"""The operating-point library a worker runs, and the setting it has in force (no ROS).

Both worker nodes (translation, perception) run the points of one library:
loaded from their ``library_path`` parameter (or given to the node), it must
be made for the node's target (and, where the node says so, for its engine
and device), and every point must run on the model the node loaded. The
manager switches a worker between the points with the ``operating_point``,
``threads`` and ``budget_ms`` parameters (``worker_parameters``); a point
must be one of the library's, "" is the best-quality point.

What a worker runs with is one immutable ``WorkerSetting`` (each node
subclasses it with what its model needs besides), swapped whole on its
``InferenceWorker`` between two jobs; its point, threads and budget are what
the worker announces as in force.
"""

from dataclasses import dataclass

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.runtime.worker_parameters import BUDGET_MS, OPERATING_POINT, THREADS

# The worker parameter naming the library's file; errors about the library name it.
LIBRARY_PATH = 'library_path'
GIVEN = 'given'   # the source of a library handed to the node rather than loaded


@dataclass(frozen=True)
class WorkerSetting:
    """The setting in force on a worker: swapped whole, never edited."""

    point: str
    threads: int
    budget_ms: float   # 0: none

    def in_force(self):
        """(point, threads, budget_ms): what the worker announces as in force."""
        return self.point, self.threads, self.budget_ms


class WorkerLibrary:
    """A worker's operating-point library, checked for its target, and the rules of its points."""

    def __init__(self, library, target, source=GIVEN):
        """``library`` (an OperatingPointLibrary) for the ``target`` worker, from ``source``."""
        self.library = library
        self.target = target
        self.source = str(source)
        if library.target != target:
            what = 'the given library' if self.source == GIVEN else self.source
            raise ValueError(f'{LIBRARY_PATH}: {what} is a {library.target} library, not a '
                             f'{target} one')

    @classmethod
    def load(cls, path, target):
        """The library at ``path``; refused (ValueError) unless made for ``target``."""
        return cls(OperatingPointLibrary.load(path), target, source=path)

    @property
    def where(self):
        """How errors about the library name it: ``library_path (<file>)``."""
        return f'{LIBRARY_PATH} ({self.source})'

    # -- what the library must suit ---------------------------------------------------
    def check_runs_on(self, engine, device, compute_type=None):
        """Refuse a library measured on another engine, device or compute type."""
        self.library.check_runs_on(engine, device, compute_type, where=self.where)

    def check_points(self, runs):
        """Refuse the library unless ``runs(point)`` passes for each of its points.

        ``runs`` raises ValueError for a point the loaded model cannot run; the
        error names the library and the point.
        """
        for point in self.library.points:
            try:
                runs(point)
            except ValueError as error:
                raise ValueError(f'{self.where}: point {point.name!r} does not run on this '
                                 f'model: {error}') from None

    # -- the setting parameters -------------------------------------------------------
    def point_name(self, name):
        """The point the ``operating_point`` value ``name`` selects ("" = best quality)."""
        return name or self.library.by_quality()[0].name

    def point_problem(self, name):
        """Why ``operating_point`` may not be ``name``, or None."""
        if not name or name in self.library.names:
            return None
        return f'unknown operating point {name!r}; known: {", ".join(self.library.names)}'

    def point(self, values):
        """The OperatingPoint the parameter ``values`` (by name) select; ValueError if none."""
        name = values[OPERATING_POINT]
        problem = self.point_problem(name)
        if problem:
            raise ValueError(f'{OPERATING_POINT}: {problem}')
        return self.library.get(self.point_name(name))

    def setting(self, values, kind=WorkerSetting, **fields):
        """The ``kind`` (a WorkerSetting) that the parameter ``values`` put in force.

        Its point, threads and budget come from ``values``; ``fields`` are the
        node's own, for its model.
        """
        return kind(point=self.point(values).name, threads=values[THREADS],
                    budget_ms=float(values[BUDGET_MS]), **fields)
