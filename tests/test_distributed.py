"""Scale-out on real processes: two bin/distill workers on 127.0.0.1 equal one; TPU errors."""
import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tfkd import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, "bin", "distill")
TIMEOUT = 300
DATA = ["--dataset=synthetic", "--synthetic_size=900", "--synthetic_dim=12",
        "--synthetic_classes=4", "--synthetic_superclasses=2", "--student=mlp_small",
        "--optimizer=adam", "--learning_rate=0.01", "--verbose=0", "--export=keras",
        "--deterministic", "--strategy=multiworker"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def environment(tf_config=None):
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CONFIG", "TFKD_DEBUG")}
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def run_workers(args, count, cwd):
    """Runs `count` bin/distill workers of one cluster on 127.0.0.1; returns their results."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes = [subprocess.Popen(
        [sys.executable, DISTILL, *args], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=environment({"cluster": {"worker": addresses}, "task": {"type": "worker",
                                                                   "index": index}}))
        for index in range(count)]
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
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    return outputs


def run_one(args, cwd):
    result = subprocess.run([sys.executable, DISTILL, *args], cwd=cwd, capture_output=True,
                            text=True, timeout=TIMEOUT, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    keras.utils.set_random_seed(0)
    models.build("mlp", input_shape=(12,), num_classes=4).save(path)
    return path


def weights(folder):
    return keras.saving.load_model(folder / "student.keras").get_weights()


@pytest.mark.parametrize("epochs,batch_size", [(1, 648), (3, 64)], ids=["one_step", "3_epochs"])
def test_two_workers_equal_one_and_only_the_chief_writes(teacher, tmp_path, epochs, batch_size):
    # 900 examples: 720 train, of which 10% validation -> 648; batch 648 is one step.
    args = [*DATA, f"--teacher={teacher}", f"--epochs={epochs}", f"--batch_size={batch_size}"]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run_one([*args, "--output_dir=out"], one)
    outputs = run_workers([*args, "--output_dir=out"], 2, two)
    assert "tfkd kd on synthetic" in outputs[0][0]
    assert sorted(os.listdir(two)) == ["out"]  # nothing beside the output folder
    written = sorted(os.listdir(two / "out"))
    assert "results.json" in written and "student.keras" in written
    reference = json.loads((one / "out" / "results.json").read_text())
    results = json.loads((two / "out" / "results.json").read_text())
    assert results["student"]["accuracy"] == pytest.approx(reference["student"]["accuracy"],
                                                           abs=0.01)
    tolerance = 1e-5 if epochs == 1 else 1e-3
    for mine, theirs in zip(weights(two / "out"), weights(one / "out")):
        scale = max(float(np.max(np.abs(theirs))), 1e-6)
        assert float(np.max(np.abs(mine - theirs))) / scale <= tolerance


@pytest.mark.parametrize("tpu,fragment", [
    ("grpc://127.0.0.1:{port}", "no TPU answers at --tpu=grpc://127.0.0.1"),
    (None, "no TPU could be reached")])
def test_tpu_without_a_tpu_fails_within_seconds_with_one_line(tmp_path, tpu, fragment):
    args = [*DATA[:-1], "--teacher=mlp", "--strategy=tpu", f"--output_dir={tmp_path / 'o'}"]
    if tpu:
        args.append("--tpu=" + tpu.format(port=free_ports(1)[0]))
    start = time.time()
    result = subprocess.run([sys.executable, DISTILL, *args], capture_output=True, text=True,
                            timeout=120, env=environment())
    assert time.time() - start < 90
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def guide_commands():
    """Every bin/distill argument list in docs/distributed.md: shell lines, TFJob and Vertex AI."""
    import re
    text = open(os.path.join(ROOT, "docs", "distributed.md")).read()
    commands = []
    for block in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S):
        language, body = block
        if language == "bash":
            body = body.replace("\\\n", " ")
            commands += [line.split("bin/distill", 1)[1].split() for line in body.splitlines()
                         if "bin/distill" in line]
        elif language == "yaml":
            commands += [json.loads(args) for args in re.findall(r"args: (\[.*?\])", body,
                                                                   flags=re.S)]
        elif language == "json":
            pools = json.loads(body)["jobSpec"]["workerPoolSpecs"]
            commands += [pool["containerSpec"]["args"] for pool in pools]
    return commands


def test_guide_commands_parse():
    from tfkd.experiment import RunConfig

    commands = guide_commands()
    assert len(commands) == 7
    strategies = set()
    for args in commands:
        args = [arg.replace("configs/", os.path.join(ROOT, "configs") + "/") for arg in args]
        strategies.add(RunConfig.from_flags(args).strategy)
    assert strategies == {"mirrored", "multiworker", "tpu"}


def test_a_killed_cluster_resumes_from_the_chiefs_checkpoint(teacher, tmp_path):
    args = [*DATA, f"--teacher={teacher}", "--synthetic_size=2000", "--epochs=8",
            "--batch_size=32", "--output_dir=out"]
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = [subprocess.Popen(
        [sys.executable, DISTILL, *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"killed_{index}.log", "w"),
        env=environment({"cluster": {"worker": addresses}, "task": {"type": "worker",
                                                                   "index": index}}))
        for index in range(2)]
    state = tmp_path / "out.partial" / "checkpoints" / "distill" / "state.json"
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline and all(p.poll() is None for p in processes):
            if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
                break
            time.sleep(0.05)
        assert all(p.poll() is None for p in processes), \
            (tmp_path / "killed_0.log").read_text()[-3000:]
    finally:
        for process in processes:  # a preempted cluster: every worker goes down
            process.kill()
            process.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 2 <= killed_at < 8 and not (tmp_path / "out").exists()
    outputs = run_workers(args, 2, tmp_path)
    assert f"Resuming distill at epoch {killed_at + 1} of 8" in outputs[0][0]
    assert f"Resuming distill at epoch {killed_at + 1} of 8" in outputs[1][0]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["resumed"] is True
    history = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in history[1:]] == list(range(8))
