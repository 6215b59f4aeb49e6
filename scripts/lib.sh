# Shared by scripts/*.sh and bench/*.sh (sourced, not run). Each script defines its
# own `die` before sourcing this.

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# A TCP port is taken if anything listens on it (any address) or accepts on 127.0.0.1.
port_in_use() {
    local p="$1"
    if command -v ss >/dev/null 2>&1; then
        if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then return 0; fi
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}

# The first free port from $1 on (200 tried).
pick_port() {
    local p="$1" limit=$(( $1 + 200 ))
    while [ "$p" -lt "$limit" ]; do
        if ! port_in_use "$p"; then echo "$p"; return 0; fi
        p=$((p + 1))
    done
    die "no free port in $1..$((limit - 1))"
}
