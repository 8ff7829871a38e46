"""The teacher side: loading teachers, serving them fast, and the sources of teacher outputs.

  loading         trained classifiers from .keras files, SavedModels and KerasHub presets;
                  the shapes they report and the class-count check
  serving         batch norms folded, bfloat16: a faster frozen teacher
  batch_format    the one batch format every source yields and every distiller reads, and the
                  interface of the sources (`TeacherOutputSource`)
  output_sources  the sources: online, stored (fixed, memory and disk cache), replay
  teaching        what teacher and student see of a batch (Beyer et al.'s modes)
  fixed           the teacher's logits computed once, carried with each example
  fingerprint     the key naming a teacher's outputs on a data split
  cache           outputs computed once per data set, kept in memory or on disk
  replay          the teacher's top-k on stored augmented views; replay_batches replays them

Nothing is imported here, so a distiller can read `tfkd.teacher.batch_format` without loading
any storage code.
"""
