"""A writer killed with SIGKILL, for the checkpoint tests: at random moments, and (every other
round) while its new file is complete but not yet renamed over the old one."""
import os
import pathlib
import random
import signal
import subprocess
import sys
import time


# run before the writer's script: in a blocking round the writer's os.replace says so and waits
# to be killed, so that a kill with the temporary file written is certain, not left to chance
_BLOCK_BEFORE_RENAME = r"""
import os as _os, time as _time
if _os.environ.get("BPCORE_TEST_BLOCK_RENAME") == "1":
    def _blocked_replace(src, dst):
        print("mid-write", flush=True)
        _time.sleep(600)
    _os.replace = _blocked_replace
"""


def kill_while_rewriting(script, args, path, read_version, min_rounds, max_rounds, max_delay,
                         seed):
    """Start `python -c script *args round` until at least min_rounds kills, and more (up to
    max_rounds) until one kill landed mid-write (a temporary file was left behind) and one
    rewrite had completed; the script prints "ready" before its first rewrite. Odd rounds are
    killed after a random delay, even ones while the new file waits to be renamed. After each
    kill, read_version(path) must give one complete version. Returns the versions seen."""
    delays = random.Random(seed)
    folder = pathlib.Path(path).parent
    versions, saw_replacement, saw_kill_mid_write, rounds = [read_version(path)], False, False, 0
    while rounds < min_rounds or (rounds < max_rounds
                                  and not (saw_replacement and saw_kill_mid_write)):
        rounds += 1
        blocking = rounds % 2 == 0
        env = {**os.environ, "BPCORE_TEST_BLOCK_RENAME": "1" if blocking else "0"}
        child = subprocess.Popen([sys.executable, "-c", _BLOCK_BEFORE_RENAME + script,
                                  *map(str, args), str(rounds)],
                                 stdout=subprocess.PIPE, cwd=folder, env=env)
        try:
            assert child.stdout.readline() == b"ready\n"
            if blocking:
                assert child.stdout.readline() == b"mid-write\n"
            else:
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
