"""Run-time adaptation core: choose operating points that meet latency budgets."""
