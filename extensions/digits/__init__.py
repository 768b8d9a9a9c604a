"""The embedded network: a small stylegan2 generator trained on scikit-learn's 8x8 digits, the
discriminator it was trained against, and a digits classifier that serves as its feature detector and
quality judge. All are stored as weights files (``extensions/data/*.npz``: arrays plus JSON constructor
arguments, no pickled code) and retrained by ``scripts/train_digits_gan.py`` (generator and
discriminator) and ``scripts/train_digits_classifier.py``.
"""

from .classifier import DigitClassifier, FeatureDetector
from .data import NUM_CLASSES, RESOLUTION, digit_images, resize, translate
from .discriminator import Discriminator
from .network import (CLASSIFIER_WEIGHTS, DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS, NETWORK_NAME, draggan_runtime,
                      generator_class, is_embedded, load_any_network, load_classifier, load_discriminator,
                      load_generator, stylegan_runtime)
from .weights import WeightsFileError, load_state, read_weights, save_weights

__all__ = [
    "DigitClassifier", "FeatureDetector", "NUM_CLASSES", "RESOLUTION", "digit_images", "resize", "translate",
    "Discriminator", "CLASSIFIER_WEIGHTS", "DISCRIMINATOR_WEIGHTS", "GENERATOR_WEIGHTS", "NETWORK_NAME",
    "draggan_runtime", "generator_class", "is_embedded", "load_any_network", "load_classifier",
    "load_discriminator", "load_generator", "stylegan_runtime", "WeightsFileError", "load_state",
    "read_weights", "save_weights",
]
