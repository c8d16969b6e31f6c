"""A WeNet small enough to train in seconds, shared by the WeNet tests."""

from dyn_dnn_ros.perception.wenet import StageConfig, WeNetConfig

TINY = WeNetConfig(input_size=16, stem_channels=16, stages=(StageConfig(32, 16, 1),),
                   head_hidden=16)
