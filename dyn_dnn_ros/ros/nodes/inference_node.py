"""What the two worker nodes share: an inference thread that stops before the node does."""

from rclpy.node import Node


class InferenceNode(Node):
    """A node whose ``self.worker`` (an ``InferenceWorker``) is joined on the way out."""

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
