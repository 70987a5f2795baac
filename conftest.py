"""Loads the vscbench safety suite's pytest plugin (vsc_fixtures); nothing else lives here."""

pytest_plugins = ["vsc_fixtures.plugin", "vsc_fixtures.robustness", "vsc_fixtures.vllm"]
