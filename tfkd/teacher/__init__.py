"""The teacher side: loading teachers, serving them fast, and the sources of teacher outputs.

  loading        trained classifiers from .keras files, SavedModels and KerasHub presets
  serving        batch norms folded, bfloat16: a faster frozen teacher
  batch_format   the one batch format every source yields and every distiller reads
  teaching       what teacher and student see of a batch (Beyer et al.'s modes)
  fixed          the teacher's logits computed once, carried with each example
  cache          outputs computed once per data set, kept in memory or on disk
  replay         the teacher's outputs on stored augmented views

Nothing is imported here, so a distiller can read `tfkd.teacher.batch_format` without loading
any storage code.
"""
