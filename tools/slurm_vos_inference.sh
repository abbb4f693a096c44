#!/usr/bin/env bash
# Multi-node, multi-GPU launcher for tools/vos_inference.py.
#
# Starts one inference process ("worker") per GPU of every task.  Each worker gets its own
# GPU (CUDA_VISIBLE_DEVICES), its own threads (OMP_NUM_THREADS) and its own shard of the
# sorted video list as complete flags
#   --num_nodes T --node_id t --num_chunks P --chunk_id g    (shard t*P + g of T*P)
# where t of T numbers the launcher's tasks (SLURM array task x srun task) and P is the
# task's GPU count, so the workers never need to talk to each other.  Every other argument
# is passed to tools/vos_inference.py unchanged; shard flags are refused (the launcher
# assigns the shards).  tools/slurm_task_plan.py makes each task's plan; README "Sharding
# and SLURM" explains the layouts.
#
# Usage (run from the repository root; paths below are examples):
#
#   SLURM, 4 nodes with 8 GPUs each, 8 CPUs per GPU:
#     sbatch --nodes=4 --gres=gpu:8 --cpus-per-task=64 tools/slurm_vos_inference.sh \
#         --base_video_dir data/JPEGImages --input_mask_dir data/Annotations \
#         --output_mask_dir outputs/davis
#   several tasks per node (--ntasks-per-node=8 --gpus-per-task=1, or --gres=gpu:8 which the
#   node's tasks split by SLURM_LOCALID), arrays (--array=0-3) and --export=NONE all work;
#   inside an allocation:  srun [--ntasks-per-node=K] bash tools/slurm_vos_inference.sh ...
#
#   Single machine without SLURM (uses every GPU it sees):
#     bash tools/slurm_vos_inference.sh --base_video_dir ... --output_mask_dir ...
#
# Environment:
#   PYTHON          interpreter (default: .venv/bin/python if present, else python3).  Under
#                   sbatch --export=NONE the submitting shell's variables (these four) are
#                   not passed: name them, e.g. --export=NONE,PYTHON=/abs/path/python
#   GPUS_PER_NODE   GPUs (= workers) per node, split over the node's tasks; default: the
#                   task's CUDA_VISIBLE_DEVICES / SLURM_GPUS_ON_NODE, else `nvidia-smi -L`
#   OMP_NUM_THREADS threads per worker; default: SLURM_CPUS_PER_TASK (else the task's CPUs)
#                   divided by the task's workers
#   TQDM_MININTERVAL seconds between progress-bar lines in the log (default 30)
#
# Every worker's output lines are prefixed with "[shard i/n <node> gpu <d>]"; progress-bar
# redraws become at most one line per TQDM_MININTERVAL.  Exits non-zero if any worker failed.
#
#SBATCH --job-name=sam2long-vos
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%x-%j.out

set -uo pipefail

# Prefix every line with a label; \r-redrawn progress bars become separate lines, terminal
# escapes and blank redraws are dropped.  Line-buffered all the way.
_label_lines() {
    local label=$1
    if command -v stdbuf > /dev/null 2>&1; then
        stdbuf -oL tr '\r' '\n'
    else
        tr '\r' '\n'
    fi | sed -u -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e '/^[[:space:]]*$/d' -e "s|^|${label} |"
}

# Everything a task does lives in one function so that, under sbatch, it can be shipped
# verbatim to the other nodes with srun (the batch script itself is a spooled copy that
# exists only on the first node).
run_task() {
    local python="${PYTHON}"
    local plan task_index task_total threads where summary
    local -a devices=()
    plan="$("${python}" tools/slurm_task_plan.py -- "$@")" || return 2
    eval "${plan}"
    local procs=${#devices[@]}
    local tag="[task ${task_index}/${task_total}${where:+ ${where}}]"
    echo "${tag} ${summary}"
    export TQDM_MININTERVAL="${TQDM_MININTERVAL:-30}"

    local -a pids=() label_pids=() labels=()
    local g out err label
    # Stop all workers if the job is cancelled or times out.
    trap 'echo "${tag} interrupted, stopping workers" >&2; kill "${pids[@]}" 2> /dev/null; exit 143' TERM INT

    for (( g = 0; g < procs; g++ )); do
        label="[shard $(( task_index * procs + g ))/$(( task_total * procs ))${where:+ ${where}} gpu ${devices[g]}]"
        labels+=("${label}")
        echo "${label} starting: --num_nodes ${task_total} --node_id ${task_index}" \
            "--num_chunks ${procs} --chunk_id ${g}, CUDA_VISIBLE_DEVICES=${devices[g]}" \
            "OMP_NUM_THREADS=${threads}"
        exec {out}> >(_label_lines "${label}")
        label_pids+=("$!")
        exec {err}> >(_label_lines "${label}" >&2)
        label_pids+=("$!")
        CUDA_VISIBLE_DEVICES="${devices[g]}" OMP_NUM_THREADS="${threads}" \
            MKL_NUM_THREADS="${threads}" PYTHONUNBUFFERED=1 \
            "${python}" tools/vos_inference.py "$@" \
            --num_nodes "${task_total}" --node_id "${task_index}" \
            --num_chunks "${procs}" --chunk_id "${g}" >&"${out}" 2>&"${err}" &
        pids+=("$!")
        exec {out}>&- {err}>&-
    done

    local failed=0 rc
    for (( g = 0; g < procs; g++ )); do
        wait "${pids[g]}"
        rc=$?
        if (( rc != 0 )); then
            echo "${labels[g]} chunk ${g} failed with exit code ${rc}" >&2
            failed=$(( failed + 1 ))
        fi
    done
    wait "${label_pids[@]}" 2> /dev/null  # let the last labelled lines through
    trap - TERM INT
    if (( failed > 0 )); then
        echo "${tag} ${failed} of ${procs} worker(s) failed" >&2
        return 1
    fi
    echo "${tag} all ${procs} worker(s) finished"
    return 0
}

if [[ ! -f tools/vos_inference.py ]]; then
    echo "error: run from the repository root (cd there before sbatch, or sbatch --chdir=...):" \
        "tools/vos_inference.py is not in $(pwd)" >&2
    exit 2
fi
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! command -v "${PYTHON}" > /dev/null 2>&1; then
    echo "error: Python interpreter '${PYTHON}' not found; set PYTHON (with sbatch" \
        "--export=NONE, pass it as --export=NONE,PYTHON=/abs/path/python)" >&2
    exit 2
fi
export PYTHON

# Under sbatch (or in an salloc shell) this script runs once, on the first node only: fan
# out to the job's tasks with srun (its layout: --ntasks-per-node, --gpus-per-task, ...).
# --export=ALL because jobs submitted with --export=NONE hand srun an empty environment
# (no PATH: "execve(): bash: No such file or directory"); --cpus-per-task because srun does
# not inherit it from sbatch since Slurm 22.05.  Inside an srun step (SLURM_STEP_ID set),
# or when re-entered from here, run the task directly.
if [[ -n "${SLURM_JOB_ID:-}" && -z "${SLURM_STEP_ID:-}" \
      && -z "${_VOS_LAUNCHER_IN_STEP:-}" ]] && command -v srun > /dev/null 2>&1; then
    "${PYTHON}" tools/slurm_task_plan.py --check_args -- "$@" || exit 2
    export _VOS_LAUNCHER_IN_STEP=1
    srun_args=(--export=ALL)
    if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then
        srun_args+=("--cpus-per-task=${SLURM_CPUS_PER_TASK}")
    fi
    exec srun "${srun_args[@]}" \
        bash -c "$(declare -f run_task _label_lines); run_task \"\$@\"" run_task "$@"
fi

run_task "$@"
