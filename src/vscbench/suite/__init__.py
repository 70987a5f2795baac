"""The suite's engine, pytest-free: the gate, cases, snapshots, robustness and the audit."""
