#!/usr/bin/env bash
# GKE: an H100 node pool whose label and taint are the ones the pipelines, the chart (gpu.*) and the Kueue
# flavor use: node selector nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3 (set here; GKE's own label is
# cloud.google.com/gke-accelerator), taint nvidia.com/gpu=present:NoSchedule (GKE adds it to every GPU pool).
# GKE installs the driver (gpu-driver-version=latest) and its device plugin: no NVIDIA GPU operator needed.
#
#   platform/nodepools/gke-gpu-nodepool.sh CLUSTER LOCATION [NODE_POOL] [MAX_NODES]
#
# Needs gcloud with access to the project of CLUSTER.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
cluster=$1
location=$2
pool=${3:-thinkflow-gpu-h100}
max_nodes=${4:-4}

gcloud container node-pools create "$pool" \
  --cluster "$cluster" \
  --location "$location" \
  --machine-type a3-highgpu-8g \
  --accelerator "type=nvidia-h100-80gb,count=8,gpu-driver-version=latest" \
  --node-labels "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3,thinkflow.io/pool=gpu-h100" \
  --enable-autoscaling --min-nodes 0 --max-nodes "$max_nodes" \
  --disk-type pd-ssd --disk-size 500 \
  --enable-gvnic \
  --shielded-secure-boot --shielded-integrity-monitoring \
  --workload-metadata GKE_METADATA
