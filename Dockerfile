# ftgw gateway image: `docker run -p 8000:8000 -v ftgw-data:/data ftgw`

# The web console's front-end packages, from the npm registry (package-lock.json pins them); served from
# node_modules by the gateway, so the console needs no internet at run time.
FROM node:20-slim AS console-packages
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FTGW_DATA_DIR=/data \
    FTGW_HOST=0.0.0.0 \
    FTGW_PORT=8000

WORKDIR /srv/ftgw
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY --from=console-packages /build/node_modules ./node_modules
RUN pip install -e . && useradd --create-home --uid 1000 ftgw && mkdir -p /data && chown ftgw /data
# Compile the engine's numba kernels into the image (app/.../__pycache__), not at the first request.
RUN python -c "from app.providers.local import engine_kernels; engine_kernels.warm_up()"

USER ftgw
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os;urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"FTGW_PORT\"]}/health')"
CMD ["ftgw", "serve"]
