#!/usr/bin/env bash
# setup-docker.sh: make a Docker engine answer and build the image the docker
# provider's tests run in. Idempotent and non-interactive; run as root.
#
#   1. If no engine answers (`docker info`, honouring DOCKER_HOST), install
#      Debian's docker.io when dockerd is missing and start dockerd in the
#      background, logging to $MCP_SANDBOX_DOCKERD_LOG
#      (default /var/log/mcp-sandbox-dockerd.log), then wait until it answers.
#   2. Build mcp-sandbox-test:busybox FROM scratch out of Debian's
#      busybox-static (no registry is reachable, so no base image is pulled).
#
# The tests find the image by the tag above; set MCP_SANDBOX_DOCKER_TEST_IMAGE
# to use another. Nothing is exported.
set -euo pipefail

IMAGE="${MCP_SANDBOX_DOCKER_TEST_IMAGE:-mcp-sandbox-test:busybox}"
LOG="${MCP_SANDBOX_DOCKERD_LOG:-/var/log/mcp-sandbox-dockerd.log}"
WAIT_SECONDS=60

say() { echo "setup-docker: $*"; }

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		say "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)

if engine_answers; then
	say "an engine already answers at ${DOCKER_HOST:-unix:///var/run/docker.sock}"
else
	command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
fi
if [ ${#missing[@]} -gt 0 ]; then
	# shellcheck disable=SC2207
	apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
fi

if ! engine_answers; then
	if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
		say "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd for it" >&2
		exit 1
	fi
	# A daemon killed with its machine leaves its pid file behind, and a new
	# one refuses to start while the file names a live process.
	if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
		say "removing the stale /var/run/docker.pid"
		rm -f /var/run/docker.pid
	fi
	say "starting dockerd in the background (log: $LOG)"
	mkdir -p "$(dirname "$LOG")"
	nohup dockerd >>"$LOG" 2>&1 </dev/null &
	for ((i = 0; i < WAIT_SECONDS; i++)); do
		engine_answers && break
		if ! kill -0 $! 2>/dev/null; then
			say "dockerd exited; the end of its log:" >&2
			tail -n 30 "$LOG" >&2
			exit 1
		fi
		sleep 1
	done
	if ! engine_answers; then
		say "dockerd did not answer within ${WAIT_SECONDS}s; the end of its log:" >&2
		tail -n 30 "$LOG" >&2
		exit 1
	fi
	say "dockerd answers after ${i}s"
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	say "image $IMAGE is present"
	exit 0
fi

say "building $IMAGE FROM scratch with busybox-static"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["/bin/sh"]
DOCKERFILE
# The classic builder needs nothing but the engine (no buildx plugin).
if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" 2>&1); then
	say "docker build failed:" >&2
	echo "$out" >&2
	exit 1
fi
docker run --rm --network none "$IMAGE" sh -c 'echo busybox $(busybox | head -1 | cut -d" " -f2) works'
