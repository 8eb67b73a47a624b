"""PoE-MVAE: a product-of-experts multimodal VAE over Farsi digits, Kannada digits and spoken digits."""

# First: a command started without its requirements set stops here, in one line (mvae/requires.py).
from . import requires  # noqa: F401
from .errors import CheckpointError, DataError, InputError
from .inference import Decoded, Pipeline, Prediction, SpeechOutput, load

__all__ = ["load", "Pipeline", "Prediction", "Decoded", "SpeechOutput", "InputError", "CheckpointError", "DataError"]
__version__ = "0.1.0"
