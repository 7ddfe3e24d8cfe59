"""Models: the registry ``MODELS`` (``logreg``, ``mlp``, ``cnn``) and :func:`build_model`.

Factories have the signature ``factory(input_shape, num_classes, *, ...) ->
nn.Module``. :func:`build_model` also accepts an import path
``"package.module:factory"``, seeds initialization without touching the global
RNG, and can load initial weights from a ``state_dict`` file.
"""

from p2pfl.models.catalog import MODELS, ModelFactory
from p2pfl.models.factory import build_model, freeze, import_factory, load_initial_weights
from p2pfl.models.zoo import cnn, logreg, mlp

__all__ = [
    "MODELS",
    "ModelFactory",
    "build_model",
    "cnn",
    "freeze",
    "import_factory",
    "load_initial_weights",
    "logreg",
    "mlp",
]
