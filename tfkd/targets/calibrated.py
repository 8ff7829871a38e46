"""Calibrated teacher targets: "Rethinking knowledge distillation from the perspective of
model calibration" (`--calibrate_teacher`, `tfkd.calibration`)."""

from keras import ops

from tfkd.calibration import CALIBRATION_MODES, calibrated_temperatures
from tfkd.targets.catalog import TARGETS


class CalibratedSoftmax:
    """Targets from a temperature-scaled teacher ("Rethinking knowledge distillation from the
    perspective of model calibration").

    mode "scale": softmax(teacher_logits / (T* * T)), the calibrated teacher's logits z / T*
      softened by the usual distillation temperature T.
    mode "replace": softmax(teacher_logits / T*), the paper's Eq. 3, where T* replaces the
      distillation temperature; pair it with `Distiller(temperature=T*)` so that the student's
      softmax uses T* too.
    T* is fitted on held-out teacher logits by `tfkd.calibration.fit_temperature`.
    """

    needs_teacher = True

    def __init__(self, temperature=4.0, calibration_temperature=1.0, calibration_mode="scale"):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not calibration_temperature > 0:
            raise ValueError(
                f"calibration_temperature (T*) must be > 0, got {calibration_temperature}"
            )
        if calibration_mode not in CALIBRATION_MODES:
            raise ValueError(
                f"calibration_mode must be one of {', '.join(CALIBRATION_MODES)}, "
                f"got {calibration_mode!r}"
            )
        self.temperature = temperature
        self.calibration_temperature = calibration_temperature
        self.calibration_mode = calibration_mode

    @property
    def effective_temperature(self):
        """The single temperature the teacher's logits are divided by."""
        divisor, temperature = calibrated_temperatures(
            self.calibration_mode, self.calibration_temperature, self.temperature
        )
        return divisor * temperature

    def __call__(self, teacher_logits, labels):
        return ops.softmax(teacher_logits / self.effective_temperature, axis=-1)


TARGETS.register("calibrated", CalibratedSoftmax)
