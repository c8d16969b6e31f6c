"""What the two worker nodes share: their library, the setting in force, the inference thread.

A worker node runs the operating points of one library (``load_library``;
the ROS-free rules are ``runtime/worker_library.py``) on ``self.worker``, an
``InferenceWorker`` holding the ``WorkerSetting`` in force, which the node
announces (``announce``, ``in_force``) and which stops before the node does.
"""

from rclpy.node import Node

from dyn_dnn_ros.ros.worker_presence import WAIT_FOR_SETTING, WorkerPresence
from dyn_dnn_ros.runtime.worker_library import LIBRARY_PATH, WorkerLibrary


class InferenceNode(Node):
    """A worker node; it sets ``self.params`` (ValidatedParameters) and ``self.worker``."""

    worker_library = None   # the WorkerLibrary, once load_library ran
    library = None          # its OperatingPointLibrary

    # -- the library ----------------------------------------------------------------
    def load_library(self, target, default_path, library=None):
        """The WorkerLibrary the node runs, refused unless made for ``target``.

        ``library`` (an OperatingPointLibrary) when given, else the file of the
        ``library_path`` parameter ("" = ``default_path``).
        """
        if library is not None:
            self.worker_library = WorkerLibrary(library, target)
        else:
            path = self.params.value(LIBRARY_PATH) or default_path
            self.worker_library = WorkerLibrary.load(path, target)
        self.library = self.worker_library.library
        return self.worker_library

    def refuse_bad_start_values(self):
        """Raise ValueError naming every parameter the node started with that it refuses."""
        problems = self.params.startup_problems()
        if problems:
            raise ValueError('; '.join(problems))

    # -- the setting ------------------------------------------------------------------
    def check_point(self, name):
        """The ``operating_point`` parameter's check: a point of the library."""
        if self.worker_library is None:   # checked again by refuse_bad_start_values
            return None
        return self.worker_library.point_problem(name)

    def in_force(self):
        """(point, threads, budget_ms) in force on the worker, as its heartbeat says."""
        return self.worker.setting.in_force()

    def announce(self, target, subscribe):
        """Announce the worker (``self.presence``); ``subscribe()`` opens its input."""
        self.presence = WorkerPresence(self, target, self.in_force, subscribe,
                                       wait_s=self.params.value(WAIT_FOR_SETTING.name))

    def put_in_force(self, setting):
        """Hand the worker ``setting`` for its next job, and announce it."""
        self.worker.set_setting(setting)
        self.presence.setting_changed()

    # -- the inference thread ---------------------------------------------------------
    def stop_work(self):
        """Answer queued jobs as dropped, let the running one finish, join the thread.

        Called by the spin loop while the context still works (see ros/spin.py),
        and again, harmlessly, by ``destroy_node``.
        """
        worker = getattr(self, 'worker', None)   # absent when the constructor failed
        if worker is not None and not worker.stop():
            self.get_logger().warning('the inference thread did not stop within 5 s')

    def destroy_node(self):
        self.stop_work()
        return super().destroy_node()
