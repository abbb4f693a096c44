#!/usr/bin/env bash
# Multi-node, multi-GPU launcher for tools/vos_inference.py.
#
# Starts one inference process per GPU on every node.  Each process gets its
# own GPU (CUDA_VISIBLE_DEVICES) and its own shard of the sorted video list via
#   --num_nodes N --node_id I --num_chunks G --chunk_id g
# so the processes never need to talk to each other.  All arguments of this
# script are passed through to tools/vos_inference.py unchanged.
#
# Usage (run from the repository root; paths below are examples):
#
#   SLURM, 4 nodes with 8 GPUs each:
#     sbatch --nodes=4 --gres=gpu:8 tools/slurm_vos_inference.sh \
#         --base_video_dir data/JPEGImages --input_mask_dir data/Annotations \
#         --output_mask_dir outputs/davis
#   (or, inside an allocation:  srun --ntasks-per-node=1 bash tools/slurm_vos_inference.sh ...)
#
#   Single machine without SLURM (uses every GPU it sees):
#     bash tools/slurm_vos_inference.sh --base_video_dir ... --output_mask_dir ...
#
# Environment:
#   PYTHON          interpreter to use (default: python)
#   GPUS_PER_NODE   processes per node; default: $SLURM_GPUS_ON_NODE, else the
#                   number of entries in $CUDA_VISIBLE_DEVICES, else
#                   `nvidia-smi -L | wc -l`
#   SLURM_NNODES / SLURM_NODEID  set by SLURM (defaults 1 / 0)
#
# When $CUDA_VISIBLE_DEVICES is already set (e.g. by SLURM's GPU binding),
# process g gets the g-th entry of that list instead of the bare index g.
# Exits non-zero if any process on the node failed.
#
#SBATCH --job-name=sam2long-vos
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%x-%j.out

set -uo pipefail

# Everything a node does lives in one function so that, under sbatch, it can be
# shipped verbatim to the other nodes with srun (the batch script itself is a
# spooled copy that exists only on the first node).
run_node() {
    local python="${PYTHON:-python}"
    local num_nodes="${SLURM_NNODES:-1}"
    local node_id="${SLURM_NODEID:-0}"
    local -a devices=()
    if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
        IFS=',' read -r -a devices <<< "${CUDA_VISIBLE_DEVICES}"
    fi

    local num_gpus
    if [[ -n "${GPUS_PER_NODE:-}" ]]; then
        num_gpus="${GPUS_PER_NODE}"
    elif [[ -n "${SLURM_GPUS_ON_NODE:-}" ]]; then
        num_gpus="${SLURM_GPUS_ON_NODE}"
    elif (( ${#devices[@]} > 0 )); then
        num_gpus="${#devices[@]}"
    elif command -v nvidia-smi > /dev/null 2>&1; then
        num_gpus="$(nvidia-smi -L 2> /dev/null | grep -c '^GPU')"
    else
        num_gpus=0
    fi

    local var
    for var in num_gpus num_nodes node_id; do
        if ! [[ "${!var}" =~ ^[0-9]+$ ]]; then
            echo "[node ?] error: ${var}='${!var}' is not a non-negative integer" >&2
            return 2
        fi
    done
    if (( num_gpus < 1 )); then
        echo "[node ${node_id}] error: no GPU found (set GPUS_PER_NODE to override)" >&2
        return 2
    fi
    if (( num_nodes < 1 || node_id >= num_nodes )); then
        echo "[node ${node_id}] error: node id ${node_id} out of range for ${num_nodes} node(s)" >&2
        return 2
    fi
    if (( ${#devices[@]} > 0 && num_gpus > ${#devices[@]} )); then
        echo "[node ${node_id}] error: ${num_gpus} processes requested but" \
            "CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES}' lists only ${#devices[@]} GPU(s)" >&2
        return 2
    fi

    local -a pids=()
    local g device
    # Stop all children if the job is cancelled or times out.
    trap 'echo "[node ${node_id}] interrupted, stopping workers" >&2; kill "${pids[@]}" 2> /dev/null; exit 143' TERM INT

    for (( g = 0; g < num_gpus; g++ )); do
        if (( ${#devices[@]} > 0 )); then
            device="${devices[g]}"
        else
            device="${g}"
        fi
        echo "[node ${node_id}/${num_nodes}] starting chunk ${g}/${num_gpus} on GPU ${device}"
        CUDA_VISIBLE_DEVICES="${device}" "${python}" tools/vos_inference.py "$@" \
            --num_nodes "${num_nodes}" --node_id "${node_id}" \
            --num_chunks "${num_gpus}" --chunk_id "${g}" &
        pids+=("$!")
    done

    local failed=0 rc
    for (( g = 0; g < num_gpus; g++ )); do
        wait "${pids[g]}"
        rc=$?
        if (( rc != 0 )); then
            echo "[node ${node_id}/${num_nodes}] chunk ${g} failed with exit code ${rc}" >&2
            failed=$(( failed + 1 ))
        fi
    done
    trap - TERM INT
    if (( failed > 0 )); then
        echo "[node ${node_id}/${num_nodes}] ${failed} of ${num_gpus} process(es) failed" >&2
        return 1
    fi
    echo "[node ${node_id}/${num_nodes}] all ${num_gpus} process(es) finished"
    return 0
}

# Under sbatch this script runs once, on the first node only: fan out to one
# task per node with srun.  Inside an srun step (SLURM_STEP_ID set), or when
# re-entered from here, run the node's share directly.
if [[ -n "${SLURM_JOB_ID:-}" && -z "${SLURM_STEP_ID:-}" \
      && -z "${_VOS_LAUNCHER_IN_STEP:-}" ]] && command -v srun > /dev/null 2>&1; then
    nodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
    export _VOS_LAUNCHER_IN_STEP=1
    exec srun --nodes="${nodes}" --ntasks="${nodes}" --ntasks-per-node=1 \
        bash -c "$(declare -f run_node); run_node \"\$@\"" run_node "$@"
fi

run_node "$@"
