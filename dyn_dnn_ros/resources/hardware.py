"""What machine a measurement was made on, as people compare machines: CPU model and count."""

import platform

from dyn_dnn_ros.resources.cpu import allowed_cpu_count, online_cpus
from dyn_dnn_ros.resources.readers import read_text


def cpu_model(procfs_root='/proc'):
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in read_text(f'{procfs_root}/cpuinfo').splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_description(device='cpu'):
    """E.g. 'Intel(R) Xeon(R) Processor (2 CPUs, x86_64)'; a host name says nothing to others.

    For a CUDA device the GPU's name comes first, with the CPUs beside it.
    """
    allowed = allowed_cpu_count()
    online = len(online_cpus('/sys'))
    cpus = f'{allowed} CPUs' if allowed == online else f'{allowed} of {online} CPUs'
    name = cpu_model()
    if str(device).startswith('cuda'):
        import torch  # only a CUDA measurement has torch and a GPU to name
        name = torch.cuda.get_device_name(torch.device(device))
    return f'{name} ({cpus}, {platform.machine()})'
