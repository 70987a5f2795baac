"""Calibration stage: turns an Item into the Request actually sent (system prompt, demonstrations, steering)."""

from vscbench.calibration.base import Calibration, build_request, parse_calibrations

__all__ = ["Calibration", "build_request", "parse_calibrations"]
