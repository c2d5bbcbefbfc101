"""``restore-r1`` as torchrun runs it in tests/test_distributed.py, with one rank that can be killed.

    python -m torch.distributed.run ... tests/distributed_worker.py train --distributed ...

With ``$KILL_RANK`` and ``$KILL_AFTER_UPDATE`` set, that rank sends itself SIGKILL right after
that update (1-based) in the first attempt (``$TORCHELASTIC_RESTART_COUNT`` 0), having first
written ``$KILL_MARKER``. Without them this is exactly ``python -m restore_r1.cli``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _install_kill() -> None:
    from restore_r1.agent import trainer

    rank, after = int(os.environ["KILL_RANK"]), int(os.environ["KILL_AFTER_UPDATE"])
    plain_train = trainer.train

    def train(*args, **kwargs):
        def callback(update: int, record: dict) -> None:
            if update + 1 == after and int(os.environ["RANK"]) == rank and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
                Path(os.environ["KILL_MARKER"]).write_text(f"rank {rank} killed after update {after}\n")
                os.kill(os.getpid(), signal.SIGKILL)

        return plain_train(*args, callback=callback, **kwargs)

    trainer.train = train  # restore_r1.cli.train imports it at call time


if __name__ == "__main__":
    if os.environ.get("KILL_RANK"):
        _install_kill()
    from restore_r1.cli import main

    sys.exit(main())
