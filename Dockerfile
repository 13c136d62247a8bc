# The notifier command (cmd/notifier) in a small static image.
#
#   docker build -t notifier .
#   docker run --rm -p 127.0.0.1:4222:4222 notifier   # serve: NATS on :4222 plus the example service
#   docker run --rm notifier demo                     # the demo, on an embedded server
#
# docker-compose.yml runs it against a 3-node NATS cluster.

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/notifier ./cmd/notifier

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/notifier /usr/local/bin/notifier
USER nonroot:nonroot
# The embedded NATS server of "notifier serve".
EXPOSE 4222
ENTRYPOINT ["/usr/local/bin/notifier"]
# Listen on every interface: inside a container, 127.0.0.1 is unreachable from outside.
CMD ["serve", "--host", "0.0.0.0"]
