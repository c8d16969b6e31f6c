"""A real competing load: a separate process that keeps one CPU busy."""

import os
import subprocess
import sys

_BUSY_LOOP = 'while True:\n    pass\n'


class CpuBurner:
    """Starts a busy-looping Python process pinned to one CPU; stops it on demand."""

    def __init__(self, cpu=None):
        allowed = sorted(os.sched_getaffinity(0))
        self.cpu = allowed[-1] if cpu is None else cpu
        self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def start(self):
        if self.running:
            return
        self.process = subprocess.Popen([sys.executable, '-c', _BUSY_LOOP],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.sched_setaffinity(self.process.pid, {self.cpu})

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()
