"""Latent inversion, score components, calibration and threshold."""

from anomgan.scoring.calibration import Calibration, calibration_key
from anomgan.scoring.inversion import InversionResult, invert_latent

__all__ = ["Calibration", "InversionResult", "calibration_key", "invert_latent"]
