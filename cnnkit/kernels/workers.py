"""``Workers``: cnnkit's resident threads, each handed one job at a time through a pair of locks.

A ThreadPoolExecutor round trip (a Future, a queue, a condition to wait on) costs several times what a
bare lock handoff costs, and an op sharing its work over the threads pays it on every call.
"""
from __future__ import annotations

import threading


class _Worker:
    """One daemon thread that runs ``fn(items)`` each time ``start`` hands it a job, and keeps the outcome."""

    def __init__(self, name):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job = self.result = self.error = None
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self):
        while True:
            self.go.acquire()
            fn, items = self.job
            try:
                self.result, self.error = [fn(item) for item in items], None
            except BaseException as error:  # raised again on the caller's thread by ``join``
                self.result, self.error = None, error
            self.job = None
            self.done.release()

    def start(self, fn, items):
        self.job = (fn, items)
        self.go.release()

    def join(self):
        """The job's results, after it has finished; its exception, raised here, when it failed."""
        self.done.acquire()
        (result, error), self.result, self.error = (self.result, self.error), None, None  # hold no arrays between jobs
        if error is not None:
            raise error
        return result


class Workers:
    """``count`` resident threads named ``cnnkit_<i>``; one caller at a time uses them (``busy`` tells)."""

    def __init__(self, count):
        self.count = count
        self.workers = [_Worker(f"cnnkit_{index}") for index in range(count)]
        self.busy = threading.Lock()

    def map(self, fn, tasks, count):
        """[fn(task) for task in tasks] on the calling thread and ``count`` workers: every (count + 1)-th task from
        the first on the caller, the others dealt round robin to the workers; waits for every worker before
        returning or raising."""
        step = count + 1
        shares = [tasks[index::step] for index in range(1, min(len(tasks), step))]
        for worker, share in zip(self.workers, shares):
            worker.start(fn, share)
        outcomes, errors = [], []
        try:
            mine = [fn(task) for task in tasks[::step]]
        finally:  # the workers write the caller's arrays: never return (or raise) while they run
            for worker in self.workers[:len(shares)]:
                try:
                    outcomes.append(worker.join())
                except BaseException as error:
                    errors.append(error)
        if errors:
            raise errors[0]
        results = [None] * len(tasks)
        results[::step] = mine
        for index, outcome in enumerate(outcomes, start=1):
            results[index::step] = outcome
        return results
