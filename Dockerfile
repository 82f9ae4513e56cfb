# One image for web and workers.  GPU workers need a CUDA build of torch: build with
#   docker build --build-arg TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>" .
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LATENTSKY_DATA_DIR=/data
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install $TORCH_SPEC && pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt
COPY . .
RUN mkdir -p /data && useradd --create-home latentsky && chown -R latentsky /data
USER latentsky
EXPOSE 8000
CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--timeout", "60"]
