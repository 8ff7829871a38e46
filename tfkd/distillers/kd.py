"""`--method=kd`: Hinton et al.'s knowledge distillation, the `Distiller` itself."""
from tfkd.distillers.base import Distiller
from tfkd.methods import ALPHA, METHODS, TEMPERATURE, Method


def _build(student, teacher, data, options):
    return Distiller(student, teacher, temperature=options["temperature"], alpha=options["alpha"])


METHODS.register("kd", Method(_build, (TEMPERATURE, ALPHA),
                              description="Hinton et al. 2015: (1-a) CE + a T^2 KL"))
