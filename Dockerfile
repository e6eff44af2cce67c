# One image for every role; the command chooses it (cryptorec serve --role key|model|evaluator,
# cryptorec train). Pyfhel is built in the builder stage with the same script CI runs; the
# page (web/) in a Node stage from its lockfile, served with `serve --web-port`.

FROM node:20-bookworm-slim AS page
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM python:3.11-slim-bookworm AS builder
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cmake/ cmake/
COPY scripts/ scripts/
COPY protos/ protos/
COPY libcryptorec/ libcryptorec/
COPY services/ services/
COPY benchmarks/ benchmarks/
RUN VENV=/opt/venv MODE=runtime ./scripts/install.sh

FROM python:3.11-slim-bookworm
# No compilers, no sources, no secrets: the virtual environment and the built page only.
RUN groupadd --gid 10001 cryptorec \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin cryptorec
COPY --from=builder /opt/venv /opt/venv
COPY --from=page /src/web/dist /opt/cryptorec/web
ENV PATH=/opt/venv/bin:$PATH \
    CRYPTOREC_WEB_PAGE=/opt/cryptorec/web \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["cryptorec"]
CMD ["serve", "--role", "all", "--port", "50051"]
