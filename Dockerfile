# The HTTP server as a container image: a static binary FROM scratch, run as
# an unprivileged user, with /healthz as its health check.
#
# No base image is pulled (the build needs no registry): the binary and a
# static busybox, for the health check, are built or copied first.
#
#   CGO_ENABLED=0 go build -trimpath -o bin/mcp-sandbox ./cmd/mcp-sandbox
#   cp "$(command -v busybox)" bin/busybox    # Debian: apt-get install busybox-static
#   docker build -t mcp-sandbox .
#   docker run -d -p 127.0.0.1:8080:8080 -e MCP_SANDBOX_AUTH_TOKEN="$TOKEN" \
#       -e MCP_SANDBOX_PROVIDER=e2b -e E2B_API_KEY mcp-sandbox
#
# Without MCP_SANDBOX_AUTH_TOKEN(_FILE) the server generates a token into
# /var/lib/mcp-sandbox/http-token (a volume):
#   docker exec CONTAINER /bin/busybox cat /var/lib/mcp-sandbox/http-token
FROM scratch

COPY bin/busybox /bin/busybox
# Only the directories the server writes to, owned by its user.
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /tmp /var/lib/mcp-sandbox && /bin/busybox chmod 1777 /tmp && /bin/busybox chown 65532:65532 /var/lib/mcp-sandbox && /bin/busybox chmod 700 /var/lib/mcp-sandbox"]
COPY bin/mcp-sandbox /mcp-sandbox

USER 65532:65532
ENV HOME=/var/lib/mcp-sandbox \
    MCP_SANDBOX_STATE_DIR=/var/lib/mcp-sandbox \
    MCP_SANDBOX_HTTP=0.0.0.0:8080 \
    MCP_SANDBOX_LOG_FORMAT=json
VOLUME /var/lib/mcp-sandbox
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/mcp-sandbox"]
