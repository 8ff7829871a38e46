"""Real bin/distill processes on 127.0.0.1: single runs and MultiWorkerMirroredStrategy clusters.

Ports come from the kernel (bind to port 0) and are released before the workers bind them, so
another process may take one in between; a cluster whose worker fails to bind is started again
on fresh ports (`ATTEMPTS` times) instead of failing the test.
"""

import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, "bin", "distill")
TIMEOUT = 420
ATTEMPTS = 4
BIND_ERRORS = (
    "Address already in use",
    "Failed to add port",
    "Could not start gRPC server",
    "UNKNOWN: Could not start",
)


def free_ports(count):
    """`count` distinct ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def environment(tf_config=None, **extra):
    """This process's environment for a bin/distill child: CPU only, no inherited TF_CONFIG."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TF_CONFIG", "TFKD_DEBUG", "TFKD_FAULT")
    }
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    env.update(extra)
    return env


def run_one(args, cwd, check=True, **extra):
    """Runs bin/distill ARGS in `cwd`; returns the CompletedProcess."""
    result = subprocess.run(
        [sys.executable, DISTILL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(**extra),
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _start_cluster(args, count, cwd, extra):
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    return [
        subprocess.Popen(
            [sys.executable, DISTILL, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(
                {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}},
                **extra,
            ),
        )
        for index in range(count)
    ]


def _wait(processes):
    deadline = time.time() + TIMEOUT
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=max(1, deadline - time.time())))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def run_cluster(args, count, cwd, check=True, **extra):
    """Runs `count` bin/distill workers of one cluster; returns [(returncode, stdout, stderr)]
    per worker, the chief first. `extra`: environment variables for every worker."""
    for attempt in range(ATTEMPTS):
        processes = _start_cluster(args, count, cwd, extra)
        outputs = _wait(processes)
        results = [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs)]
        if attempt + 1 < ATTEMPTS and any(
            code != 0 and any(text in err for text in BIND_ERRORS) for code, _, err in results
        ):
            continue
        break
    if check:
        for code, _, err in results:
            assert code == 0, err[-3000:]
    return results
