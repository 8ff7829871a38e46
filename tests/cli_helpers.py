"""Running bin/distill's job in-process."""

from tfkd import experiment


def config(args):
    return experiment.RunConfig.from_flags(args)


def run_distill(args):
    """What `bin/distill ARGS` runs, in this process; returns results.json's dictionary."""
    return experiment.run(config(args))


def kill_during_distillation(args, output_dir, after_epochs=2, timeout=240):
    """Starts `bin/distill ARGS`, SIGKILLs it once its distillation checkpoint records
    `after_epochs` epochs, and returns the number of epochs that checkpoint holds."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    distill = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin", "distill"
    )
    env = {key: value for key, value in os.environ.items() if key != "TFKD_DEBUG"}
    process = subprocess.Popen(
        [sys.executable, distill, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = os.path.join(f"{output_dir}.partial", "checkpoints", "distill", "state.json")
    deadline = time.time() + timeout

    def epochs():
        with open(state) as handle:
            return json.load(handle)["epoch"]

    try:
        while time.time() < deadline and process.poll() is None:
            if os.path.exists(state) and epochs() >= after_epochs:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return epochs()
