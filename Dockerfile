# One image for web and workers.  GPU workers need a CUDA build of torch: build with
#   docker build --build-arg TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>" .
# The page libraries (sampjs, aladin-lite) from npm, exactly as package-lock.json pins them.
FROM node:20-slim AS npm
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts

FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LATENTSKY_DATA_DIR=/data LATENTSKY_STATIC_ROOT=/app/staticfiles
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*
COPY requirements.lock requirements-nodeps.txt ./
# torch first so that a CUDA build from TORCH_SPEC satisfies the lock's torch==2.13.0;
# timm last, without its torchvision requirement (see requirements-nodeps.txt).
RUN pip install $TORCH_SPEC && pip install -r requirements.lock && pip install --no-deps -r requirements-nodeps.txt
COPY . .
COPY --from=npm /app/node_modules ./node_modules
# Static files with content-hashed names and their manifest (whitenoise serves them; a new
# image busts browser caches).  Into the image, not the /data volume, which would hide them.
RUN LATENTSKY_DATA_DIR=/tmp/collect python manage.py collectstatic --noinput -v 0 && rm -rf /tmp/collect
RUN mkdir -p /data && useradd --create-home latentsky && chown -R latentsky /data
USER latentsky
EXPOSE 8000
# gthread, 3 workers x 8 threads: chosen by benchmarks/load.py --servers (load_servers.json, 25 people on
# 2 cores): sync workers had 1.5-4x the p95 of gthread on every endpoint (a slow atlas holds a whole
# sync worker); 3 x 8 and 3 x 4 were within noise of each other, 3 x 8 ahead on 4 of the 6 endpoints.
CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "3", "--threads", "8", "--timeout", "60"]
