"""Design time of Dynamic-HAT: latency dataset, predictor, evolutionary search, sweep, report.

Core code: no rclpy. The pipeline, one command per step::

    dyn-dnn-ros latency      # measure random sub-networks -> latency CSV
    dyn-dnn-ros predictor    # fit per-layer latency predictors -> predictor file
    dyn-dnn-ros search       # one evolutionary search under one latency constraint
    dyn-dnn-ros sweep        # searches over a range of constraints -> operating-point library
    dyn-dnn-ros design-report  # which design-space choices the library uses
"""
