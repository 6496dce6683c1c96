# The image MLflow's kubernetes backend runs every entry point in (README, "Run on Kubernetes"):
# the pinned Python, exactly requirements.lock, git (a run's cache key is its commit and the state
# of its working tree, read with git), and the project with its history at MLflow's working folder.
# Build it from the project's root, tagged with the commit it holds:
#   docker build -t localhost:5001/fabric-madness:$(git rev-parse --short=12 HEAD) .
FROM python:3.11.7-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /mlflow/projects/code
# Whoever the pod runs as, git must read a repository another user owns.
RUN git config --system --add safe.directory /mlflow/projects/code

COPY requirements.lock .
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip install --system --no-cache --compile-bytecode -r requirements.lock

COPY . .
ENV PYTHONUNBUFFERED=1
