"""Budgets: latency, memory and placement limits, baselines and the statistics behind them."""
