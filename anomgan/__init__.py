"""anomgan: GAN-based anomaly detection trained on normal data only.

Score direction everywhere: higher ``anomaly_score`` = more anomalous; label 1 = anomaly. The scikit-learn
methods of ``AnoGAN`` follow scikit-learn (``score_samples`` higher = more normal, ``predict`` -1 = outlier).
"""

from anomgan.config import Config, build_config
from anomgan.errors import AnomganError, ConfigError, DataError, OutputError, RunError, TrainingDiverged
from anomgan.estimator import AnoGAN
from anomgan.model import Inversion, Scorer

__version__ = "0.3.0"
__all__ = ["AnoGAN", "Config", "Inversion", "Scorer", "build_config", "AnomganError", "ConfigError", "DataError",
           "OutputError", "RunError", "TrainingDiverged", "__version__"]
