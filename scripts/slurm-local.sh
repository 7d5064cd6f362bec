#!/usr/bin/env bash
# A single-node Slurm on 127.0.0.1, to try `snakemake --profile slurm` on this machine (docs/slurm.md).
# Needs root; on Debian/Ubuntu it installs slurm-wlm and munge with apt-get where they are missing.
#
#   eval "$(scripts/slurm-local.sh start)"     # munged + slurmctld + slurmd; exports SLURM_CONF and PATH
#   snakemake --profile slurm --profile /tmp/xbml-slurm-local/profile   # the overlay fits jobs to this machine
#   squeue; sinfo                               # the cluster's own commands, through the exported PATH
#   scripts/slurm-local.sh stop                 # cancels the jobs, stops the three daemons (by PID)
#   scripts/slurm-local.sh status
#
# Environment: XBML_SLURM_ROOT   folder for config, state, logs   (default /tmp/xbml-slurm-local)
#              XBML_SLURM_GPUS   GPUs the node advertises without having them, so that the profile's
#                                GPU requests get scheduled and the jobs run on the CPU (default 2;
#                                0 = no GPUs, the overlay then drops the GPU request)
# Everything lives in XBML_SLURM_ROOT; nothing under /etc is written. Any folder works whose
# parents the user `munge` can enter (not a 0700 home or pytest folder).
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-}"
case "$action" in
    start|stop|status|install) ;;
    *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

python=.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" scripts/slurm_local.py "$action" \
    --root "${XBML_SLURM_ROOT:-/tmp/xbml-slurm-local}" \
    --fake-gpus "${XBML_SLURM_GPUS:-2}" \
    --profile slurm/config.yaml
