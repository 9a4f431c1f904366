# The weir image: the compiled CLI (dist/) on Node 24 with production dependencies only,
# run as an unprivileged user. Build from the repository root:
#
#   docker build -t weir:0.1.0 .
#   docker run --rm weir:0.1.0 --help
#
# Pipelines are TypeScript files the CLI loads at start (Node strips their types). Put them
# under /app/pipelines, by a derived image (FROM weir, COPY my-pipeline.ts /app/pipelines/)
# or a mounted volume (the Helm chart mounts a ConfigMap there): inside /app, `import … from
# 'weir'` resolves to this package itself (its package.json "exports"), so the pipeline and
# the CLI share one copy of the runtime. deploy/README.md and docs/kubernetes.md say more.
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: all dependencies, then tsc into dist/ --------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` builds dist/, and the sources are not here
# yet; the build runs below, once they are.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/
COPY types types
COPY index.ts ./
COPY runtime runtime
COPY runner runner
COPY coordinator coordinator
COPY monitor monitor
COPY processors processors
COPY cli cli
COPY testing testing
RUN npm run build

# --- prod-deps: the dependencies the compiled code needs, no devDependencies ----------
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev leaves TypeScript, vitest and the test clients out. --ignore-scripts again
# keeps `prepare` (a build, which needs TypeScript) from running. No production package
# needs its install script: esbuild (tsx's, for pipelines Node's type stripping cannot load)
# finds its binary in the optional @esbuild/<platform> package, and msgpackr-extract is
# optional and prebuilt. (Tried outside Docker: this node_modules with dist/ runs a pipeline
# from /app/pipelines, an enum-using one through tsx included.)
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# --- runtime ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
# Fewer glibc malloc arenas: RocksDB's reads on Node's thread pool otherwise leave freed
# memory spread over one arena per thread (docs/operations.md, "A worker's memory").
# bin/weir.js sets it for the commands that hold state; here it covers every process.
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
# The image's `node` user (uid 1000). Numeric, so Kubernetes' runAsNonRoot can check it.
# /app/pipelines holds pipeline files; /var/lib/weir is the default place for state
# (workers' --state-dir, run's --data-dir), a volume in the chart.
RUN mkdir -p /app/pipelines /var/lib/weir && chown 1000:1000 /app/pipelines /var/lib/weir
COPY --from=prod-deps /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json LICENSE README.md ./
COPY bin/weir.js bin/weir.js
USER 1000:1000
# bin/weir.js runs dist/ when the TypeScript sources are absent, as here.
ENTRYPOINT ["node", "bin/weir.js"]
CMD ["--help"]
