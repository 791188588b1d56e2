# syntax=docker/dockerfile:1
#
# nix-reapi-proxy container image.
#
#   docker build -t nix-reapi-proxy:0.1.0 .
#   docker run -p 8980:8980 -p 9090:9090 \
#     -e NIX_REAPI_PROXY_UPSTREAM=grpc://buildbarn-frontend:8980 nix-reapi-proxy:0.1.0
#
# Stage 1 compiles the TypeScript and keeps only the runtime dependencies;
# stage 2 is Debian bookworm-slim with Node 20, the Nix client (Debian's
# nix-bin: nix, nix-store), the OpenSSH client for ssh-ng:// shared stores and
# HAProxy, the optional HTTP/2 front (deploy/front/haproxy.cfg; the Kubernetes
# manifests run it as a sidecar: command haproxy -db -f /opt/nix-reapi-proxy/front/haproxy.cfg).
# The Nix client only talks to the shared store and to substituters, it never
# builds, so the image has no Nix daemon, build users or /nix store of its own.

ARG NODE_MAJOR=20

FROM node:${NODE_MAJOR}-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY protos ./protos
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:${NODE_MAJOR}-bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends nix-bin openssh-client ca-certificates haproxy \
 && rm -rf /var/lib/apt/lists/*
# A fixed, non-root uid/gid: Kubernetes' runAsNonRoot can only verify numeric users,
# and the manifests under deploy/kubernetes use the same numbers.
RUN groupadd --system --gid 10001 nix-reapi-proxy \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/nix-reapi-proxy --create-home \
      --shell /usr/sbin/nologin nix-reapi-proxy
WORKDIR /opt/nix-reapi-proxy
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/protos ./protos
COPY --from=build /src/dist/src ./dist/src
COPY deploy/front/haproxy.cfg /opt/nix-reapi-proxy/front/haproxy.cfg
# The default configuration: listen on every interface, metrics on 9090. The
# upstream and the Nix settings come from a mounted file (Kubernetes: the
# ConfigMap replaces this directory) or from NIX_REAPI_PROXY_* variables.
COPY deploy/docker/config.yaml /etc/nix-reapi-proxy/config.yaml
ENV NODE_ENV=production
USER 10001:10001
# 8980: REAPI (gRPC), 9090: Prometheus /metrics
EXPOSE 8980 9090
ENTRYPOINT ["node", "/opt/nix-reapi-proxy/dist/src/cli.js"]
CMD ["--config", "/etc/nix-reapi-proxy/config.yaml"]
# Asks the running proxy's grpc.health.v1.Health service; the address comes
# from the same config's listen setting (0.0.0.0 is dialled as 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["node", "/opt/nix-reapi-proxy/dist/src/cli.js", "health", "--config", "/etc/nix-reapi-proxy/config.yaml", "--timeout", "5s"]
