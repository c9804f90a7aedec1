# Sourced by the benchmark scripts: installs nginx, wrk and aria2c from
# Debian when they are missing (the only step that needs root).
missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v aria2c >/dev/null 2>&1 || missing="$missing aria2"
if [ -n "$missing" ]; then
	echo "installing:$missing" >&2
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
fi
