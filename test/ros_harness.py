"""Real-DDS test helpers: a background executor, message collectors, waits."""

import os
import threading
import time


class RosHarness:
    """Creates nodes on one context and spins them until the session ends.

    The nodes spin on ``NodeSpinner``, as in ``dyn-dnn-ros bringup`` and the
    node processes, on a background thread.
    """

    def __init__(self):
        import rclpy

        from dyn_dnn_ros.ros.spin import NodeSpinner
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.callback_errors = []  # tracebacks of callbacks that raised
        self.spinner = NodeSpinner(context=self.context, on_callback_error=self._record_error)
        self.spinner.start()
        self._counter = 0

    def _record_error(self, node_name, text):
        self.callback_errors.append(f'{node_name}: {text}')

    def add(self, node):
        return self.spinner.add(node)

    def remove(self, node):
        # Waits for a callback of this node in progress before destroying it.
        self.spinner.remove(node)

    def probe_node(self):
        """A fresh helper node for subscriptions and clients in one test."""
        self._counter += 1
        node = self.rclpy.create_node(f'test_probe_{os.getpid()}_{self._counter}',
                                      context=self.context)
        return self.add(node)

    def shutdown(self):
        self.spinner.shutdown()
        self.rclpy.shutdown(context=self.context)


class MessageCollector:
    """Subscribes a topic and keeps what arrives, for assertions with timeouts."""

    def __init__(self, node, msg_type, topic, qos=10):
        self.messages = []
        self._condition = threading.Condition()
        self.subscription = node.create_subscription(msg_type, topic, self._receive, qos)

    def _receive(self, msg):
        with self._condition:
            self.messages.append(msg)
            self._condition.notify_all()

    def wait_for(self, predicate=lambda msg: True, count=1, timeout=10.0):
        """Messages matching ``predicate`` once ``count`` of them arrived."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                matching = [m for m in self.messages if predicate(m)]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f'{len(matching)}/{count} matching messages after {timeout} s '
                        f'({len(self.messages)} received in all)')
                self._condition.wait(remaining)


def wait_until(predicate, timeout=10.0, interval=0.02, message='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f'{message} not reached within {timeout} s')


def call_service(node, srv_type, name, request, timeout=10.0):
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'service {name} not available within {timeout} s')
        future = client.call_async(request)
        wait_until(future.done, timeout, message=f'response from {name}')
        return future.result()
    finally:
        node.destroy_client(client)


def set_parameters(node, target_node, parameters, timeout=10.0, atomically=False):
    """Set parameters of another node through its parameter services.

    Returns one SetParametersResult per parameter, or a single one (in a list)
    when ``atomically`` is true: all are set together or none is.
    """
    from rcl_interfaces.srv import SetParameters, SetParametersAtomically
    from rclpy.parameter import Parameter
    srv_type, service = ((SetParametersAtomically, 'set_parameters_atomically') if atomically
                         else (SetParameters, 'set_parameters'))
    request = srv_type.Request()
    request.parameters = [Parameter(name, value=value).to_parameter_msg()
                          for name, value in parameters.items()]
    response = call_service(node, srv_type, f'{target_node}/{service}', request, timeout)
    return [response.result] if atomically else response.results
