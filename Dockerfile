# molt's own image: the CLI, used for both containers of the molt pod in Kubernetes mode
# (`molt controller --kubernetes` and `molt sidecar`), and usable for local mode too.
#   docker build -t molt:dev .

FROM node:20-alpine AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY common ./common
COPY controller ./controller
COPY sidecar ./sidecar
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts

FROM node:20-alpine
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/common ./dist/common
COPY --from=build /src/dist/controller ./dist/controller
# The dashboard's page and scripts are served from the source tree (not compiled).
COPY controller/dashboard/ui ./controller/dashboard/ui
COPY --from=build /src/dist/sidecar ./dist/sidecar
COPY bin ./bin
COPY crds ./crds
# The control socket lives on a shared emptyDir mounted here in Kubernetes; local default too.
RUN mkdir -p /var/run/molt && chown node:node /var/run/molt
USER node
EXPOSE 8080 9090
ENTRYPOINT ["node", "/app/bin/molt.js"]
CMD ["--help"]
