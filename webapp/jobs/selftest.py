"""A job that exercises the whole job path (queue, claim, progress, cancel) without ML.

Curators run it from the Jobs page to check that workers are alive; the tests use
it to prove claim/retry/cancel behaviour through a real worker.
"""
import os
import signal
import time


def run_selftest(job, progress) -> dict:
    steps = int(job.params.get("steps", 10))
    delay = float(job.params.get("delay", 0.05))
    if job.params.get("fail"):
        raise RuntimeError("self-test asked to fail")
    for step in range(1, steps + 1):
        time.sleep(delay)
        progress(step, steps, f"step {step}/{steps}")
        progress.check_cancelled()
        if job.params.get("kill_own_process") and step == 1:
            # The fault tests' stand-in for a handler the OOM killer ends on every attempt.
            os.kill(os.getpid(), signal.SIGKILL)
    return {"steps": steps, "attempt": job.attempts}
