"""The folder a run works in: `<output_dir>.partial/`, renamed to `<output_dir>` at the end.

Finished phases leave their outputs there (`phases.json` lists them); a re-run of the same
command finds them and goes on. `run.json` records the command-line form of the config, so a
re-run with other flags is refused instead of mixing two recipes.
"""

import errno
import glob
import json
import os
import shutil

from tfkd import settings
from tfkd.atomic import replace, write_text

RUN_FILE, PHASES_FILE = "run.json", "phases.json"


def _writable(path, what):
    """Raises one clear error when the folder for `path` cannot be created or written."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {path}: cannot write in {parent} (permission denied)")


class WorkDir:
    """Args:
    output_dir: the final folder.
    args: the run's settings as {flag: value}; a `.partial/` folder made with other values is
      refused.
    overwrite: replace an existing `output_dir` and start over instead of resuming.
    flag: the name to use in messages (`--output_dir` on the command line).
    write: False on processes that must not write the output (multi-worker non-chief).
    """

    def __init__(self, output_dir, args, overwrite=False, flag="--output_dir", write=True):
        self.output_dir = os.path.abspath(output_dir)
        self.path = self.output_dir + ".partial"
        self.args, self.overwrite, self.flag, self.write = dict(args), overwrite, flag, write
        self.resumed = self.created = False

    def open(self):
        """Creates or resumes the folder; returns self."""
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(f"{self.flag} {self.output_dir} exists and is not a folder")
        if os.path.isdir(self.output_dir) and os.listdir(self.output_dir) and not self.overwrite:
            raise ValueError(
                f"{self.flag} {self.output_dir} exists and is not empty; pass "
                "--overwrite to replace it"
            )
        if not self.write:
            return self
        _writable(self.path, self.flag)
        run_file = os.path.join(self.path, RUN_FILE)
        if self.overwrite:
            shutil.rmtree(self.path, ignore_errors=True)
        elif os.path.isfile(run_file):
            refuse_other_settings(self.path, "an unfinished run", self.started_with(), self.args)
            self.resumed = True
            return self
        elif os.path.exists(self.path):
            shutil.rmtree(self.path)  # no run.json: it never got past its first write
        os.makedirs(self.path, exist_ok=True)
        self.created = True
        write_text(run_file, json.dumps(self.args, indent=2) + "\n")
        return self

    def file(self, *names):
        return os.path.join(self.path, *names)

    def started_with(self):
        """The settings ({flag: value}) the unfinished run in the `.partial/` folder was started
        with, or None when there is none."""
        run_file = self.file(RUN_FILE)
        if not os.path.isfile(run_file):
            return None
        with open(run_file) as handle:
            return json.load(handle)

    def holds_other_settings(self):
        """True when the `.partial/` folder holds an unfinished run started with other settings
        than `args` (which `open` refuses unless `overwrite`)."""
        before = self.started_with()
        return before is not None and bool(settings.changed(before, self.args))

    def phases(self):
        path = self.file(PHASES_FILE)
        if not os.path.isfile(path):
            return {}
        with open(path) as handle:
            return json.load(handle)

    def done(self, phase):
        """What `finish(phase, ...)` recorded, or None when the phase has not finished."""
        return self.phases().get(phase)

    def finish(self, phase, record=None):
        """Marks `phase` finished, keeping `record` (JSON) for a resumed run."""
        if not self.write:
            return
        phases = self.phases()
        phases[phase] = record if record is not None else {}
        write_text(self.file(PHASES_FILE), json.dumps(phases, indent=2) + "\n")

    def discard_if_empty(self):
        """Removes the folder this process made when nothing in it is worth resuming (no phase
        finished, no checkpoint written)."""
        if (
            self.created
            and os.path.isdir(self.path)
            and not self.phases()
            and not glob.glob(self.file("checkpoints", "*", "state.json"))
        ):
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self, results):
        """Writes results.json, drops the resume state and makes the folder `output_dir`."""
        if not self.write:
            return
        write_text(self.file("results.json"), json.dumps(results, indent=2) + "\n")
        for name in (RUN_FILE, PHASES_FILE):
            os.remove(self.file(name))
        shutil.rmtree(self.file("checkpoints"), ignore_errors=True)
        try:
            replace(self.path, self.output_dir)
        except OSError as error:
            raise disk_error(error, self.output_dir) from None


def refuse_other_settings(place, holds, before, now):
    """ "Same settings, so resume?", decided and worded once for every resumable folder (a run's
    `.partial/`, a search, a search's teachers): ValueError when the {flag: value} records
    `before` (what `place` was made with) and `now` differ (`tfkd.settings.changed`; a config's
    records leave out what only reports, `RunConfig.settings`). `holds` names what is there."""
    changed = settings.changed(before, now)
    if changed:
        details = "; ".join(
            f"--{name} was {before.get(name)!r}, now {now.get(name)!r}" for name in changed
        )
        raise ValueError(
            f"{place} holds {holds} with other flags ({details}); re-run with the same flags to "
            "resume it, or pass --overwrite to start over"
        )


def announce_resume(phase, epoch, step, epochs):
    """Prints where a training phase resumes: epoch `epoch` (0-based) of `epochs`, after `step`
    steps of it; nothing for a phase that starts from scratch."""
    if step:
        print(f"Resuming {phase} at epoch {epoch + 1} of {epochs}, step {step + 1}", flush=True)
    elif epoch:
        print(f"Resuming {phase} at epoch {epoch + 1} of {epochs}", flush=True)


def announce_reuse(what):
    """Prints that a finished phase's output, `what` ("the student distilled by this run"), is
    loaded instead of made again."""
    print(f"Loading {what}", flush=True)


def disk_error(error, path):
    """One clear line for a failed write; earlier results are never touched by the failure."""
    if error.errno == errno.ENOSPC:
        return ValueError(
            f"no space left on the device while writing {path}; earlier results are "
            "intact; free some space and re-run the same command to resume"
        )
    return ValueError(f"cannot write {path}: {error.strerror or error}")
