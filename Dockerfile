# Hermes and Talos in one image. Build: docker build -t hermes .
# Run:   docker run -p 8080:8080 --env-file .env -v hermes-data:/var/lib/hermes hermes
# Talos: docker run -p 8001:8001 -e OLLAMA_HOST=http://host.docker.internal:11434 --entrypoint talos hermes

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# pingora-core with one change of ours (patches/README.md).
COPY patches patches
COPY src src
COPY talos talos
COPY benches benches
COPY policies policies
# The classifier's shipped corpus, compiled in (src/decide/classify/corpus.rs).
COPY tests/data/classify tests/data/classify
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/hermes --shell /usr/sbin/nologin hermes \
    && mkdir -p /var/lib/hermes /etc/hermes \
    && chown hermes:hermes /var/lib/hermes
COPY --from=build /src/target/release/hermes /src/target/release/talos /usr/local/bin/
COPY policies /etc/hermes/policies
USER hermes
WORKDIR /var/lib/hermes
ENV HERMES_LISTEN=0.0.0.0:8080 \
    HERMES_DB_PATH=/var/lib/hermes/hermes.duckdb \
    TALOS_PORT=8001
EXPOSE 8080 8001
VOLUME ["/var/lib/hermes"]
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["hermes"]
CMD ["serve", "--policies", "/etc/hermes/policies"]
