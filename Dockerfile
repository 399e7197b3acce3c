# syntax=docker/dockerfile:1.7
# snoopi-serve: the HTTP service on a CUDA 12 + cuDNN 9 runtime, with onnxruntime-node's CUDA 12 execution providers
# and the embedded model packages of models/. docs/deployment.md says how to build, run and check it.
#
#   GPU image (default):  docker build -t snoopi-serve:0.1.0 .
#                         docker run --gpus all -p 8080:8080 snoopi-serve:0.1.0
#   CPU image:            docker build -t snoopi-serve:0.1.0-cpu --build-arg RUNTIME_BASE=ubuntu:22.04 \
#                           --build-arg ONNXRUNTIME_NODE_INSTALL=skip --build-arg EXECUTION_PROVIDER=cpu .
#
# The trainer has its own image: Dockerfile.trainer.

# onnxruntime-node 1.30's CUDA providers are built against CUDA 12.x and cuDNN 9.x (any 12.x minor version works).
ARG RUNTIME_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# --- node: Node.js 20 from NodeSource's apt repository on the runtime base. The build stage starts from it too, so
# the native modules (onnxruntime-node, sharp) are installed on the same system libraries they run on.
FROM ${RUNTIME_BASE} AS node
ARG NODE_MAJOR=20
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d -m 0755 /etc/apt/keyrings \
 && curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key \
    | gpg --dearmor -o /etc/apt/keyrings/nodesource.gpg \
 && echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_${NODE_MAJOR}.x nodistro main" \
    > /etc/apt/sources.list.d/nodesource.list \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs \
 && apt-get purge -y --auto-remove curl gnupg \
 && rm -rf /var/lib/apt/lists/* \
 && node --version

# --- build: install every dependency, compile the TypeScript, then drop the dev dependencies.
FROM node AS build
WORKDIR /app
# onnxruntime-node's postinstall reads ONNXRUNTIME_NODE_INSTALL (an ARG is in the environment of RUN): cuda12 downloads
# the CUDA 12 providers (libonnxruntime_providers_cuda.so, _shared, _tensorrt) from NuGet, which the build network
# reaches. The variable wins over .npmrc's onnxruntime-node-install=skip, which exists for machines that cannot.
ARG ONNXRUNTIME_NODE_INSTALL=cuda12
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund \
 && if [ "${ONNXRUNTIME_NODE_INSTALL}" != skip ]; then \
      test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so; \
    fi
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: the compiled service, production dependencies, the playground and the embedded models; non-root.
FROM node AS runtime
ARG EXECUTION_PROVIDER=cuda
# SNOOPI_EXECUTION_PROVIDER=cuda falls back to cpu (and says so in the log, /models and /metrics) where CUDA cannot load.
# SNOOPI_K8S_JOB_TEMPLATE: the Job manifest copied below, for SNOOPI_JOB_RUNNER=kubernetes.
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0 \
    SNOOPI_MODELS_DIR=/app/models \
    SNOOPI_EXECUTION_PROVIDER=${EXECUTION_PROVIDER} \
    SNOOPI_K8S_JOB_TEMPLATE=/app/k8s/base/trainer-job-template.yaml
WORKDIR /app
# Everything stays owned by root and read-only to the service user (Kubernetes also mounts the root filesystem
# read-only) but the job records' folder (SNOOPI_JOBS_DIR's default, created at start): mount a volume there to
# keep them across containers. On Kubernetes they live on the models volume instead.
RUN groupadd --system --gid 10001 snoopi \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin snoopi \
 && install -d -o 10001 -g 10001 -m 0750 /app/runs/jobs
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# Read at run time by `snoopi import` / `snoopi nasa-patch` (src/onnx/onnx-proto.ts).
COPY --from=build /app/src/onnx/onnx.proto ./src/onnx/onnx.proto
COPY web ./web
# The embedded model packages, and base/: the checkpoints fine-tune jobs start from.
COPY models ./models
# The Job manifest the kubernetes job runner fills in (SNOOPI_K8S_JOB_TEMPLATE in k8s/base/configmap.yaml).
COPY k8s/base/trainer-job-template.yaml ./k8s/base/trainer-job-template.yaml
USER 10001:10001
EXPOSE 8080
# /healthz is liveness: it answers at once, even while the model loads (that is /readyz) and under full load.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
