"""The torch engine: the SuperTransformer sliced in place (``Translator``), engine API."""

import torch

from dyn_dnn_ros.translation.translator import Translator


class TorchEngine:
    """Any sub-network, CPU or CUDA, fixed or dynamic beam width, exact deadline stop."""

    name = 'torch'
    supports_dynamic_beam = True
    vocabulary_map_sha256 = ''   # every step scores the whole vocabulary

    def __init__(self, config):
        self.config = config
        self.compute_type = config.compute_type
        self.device = config.device
        self.translator = Translator.load(config.model_path, config.spm_path,
                                          device=config.device, batch_size=config.batch_size,
                                          alpha=config.alpha, max_len_a=config.max_len_a,
                                          max_len_b=config.max_len_b)
        self.tokenizer = self.translator.tokenizer
        self.space = self.translator.space
        self.longest_source = self.space.max_positions - 1  # one position is the EOS

    def subnet(self, spec):
        return self.translator.subnet(spec)

    def check_subnet(self, subnet):
        """Every sub-network of the design space runs on this engine."""
        return self.subnet(subnet)

    def _use_threads(self, threads):
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def prepare(self, subnets, beam=None, threads=(1,), text='The robot is ready.'):
        """Warm up: the first inference on a thread count builds its pools and caches."""
        for count in sorted(set(threads)):
            self._use_threads(count)
            for subnet in subnets:
                self.translator.translate([text], subnet=subnet, beam=beam)

    def translate(self, texts, subnet=None, beam=None, threads=None, deadline=None,
                  max_source_tokens=None, progress=False, patience=1.0, batch_size=None):
        self._use_threads(threads)
        self.translator.batch_size = batch_size or self.config.batch_size
        self.translator.max_source_tokens = min(max_source_tokens or self.longest_source,
                                                self.longest_source)
        return self.translator.translate(texts, subnet=subnet, beam=beam, patience=patience,
                                         progress=progress, deadline=deadline)
