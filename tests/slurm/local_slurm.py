"""The single-node Slurm of the Slurm tests: scripts/slurm_local.py (what scripts/slurm-local.sh
runs), imported from there so that the logic lives in one place."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from slurm_local import LocalSlurm, SlurmUnavailable, install, overlay_profile  # noqa: E402

__all__ = ["LocalSlurm", "SlurmUnavailable", "install", "overlay_profile"]
