"""anomgan: GAN-based anomaly detection trained on normal data only.

Score direction everywhere: higher ``anomaly_score`` = more anomalous; label 1 = anomaly.
"""

from anomgan.config import Config, build_config
from anomgan.detector import AnoGAN
from anomgan.errors import AnomganError, ConfigError, DataError, OutputError, RunError, TrainingDiverged

__version__ = "0.1.0"
__all__ = ["AnoGAN", "Config", "build_config", "AnomganError", "ConfigError", "DataError", "OutputError", "RunError",
           "TrainingDiverged", "__version__"]
