"""A writer killed with SIGKILL at random moments, for the checkpoint tests."""
import pathlib
import random
import signal
import subprocess
import sys
import time


def kill_while_rewriting(script, args, path, read_version, min_rounds, max_rounds, max_delay,
                         seed):
    """Start `python -c script *args round` until at least min_rounds kills, and more (up to
    max_rounds) until one kill landed mid-write (a temporary file was left behind) and one
    rewrite had completed; the script prints "ready" before its first rewrite. After each
    kill, read_version(path) must give one complete version. Returns the versions seen."""
    delays = random.Random(seed)
    folder = pathlib.Path(path).parent
    versions, saw_replacement, saw_kill_mid_write, rounds = [read_version(path)], False, False, 0
    while rounds < min_rounds or (rounds < max_rounds
                                  and not (saw_replacement and saw_kill_mid_write)):
        rounds += 1
        child = subprocess.Popen([sys.executable, "-c", script, *map(str, args), str(rounds)],
                                 stdout=subprocess.PIPE, cwd=folder)
        try:
            assert child.stdout.readline() == b"ready\n"
            time.sleep(delays.uniform(0.05, max_delay))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        versions.append(read_version(path))
        saw_replacement |= versions[-1] != versions[-2]
        leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
        saw_kill_mid_write |= bool(leftovers)
        # stray temporary files are documented: .<name>.<random>.tmp next to the checkpoint
        assert all(name.startswith(f".{pathlib.Path(path).name}.") for name in leftovers)
    assert saw_replacement, f"the child never completed a rewrite: versions {versions}"
    assert saw_kill_mid_write, "no kill landed mid-write"
    return versions
