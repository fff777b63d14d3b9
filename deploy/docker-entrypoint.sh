#!/bin/sh
# popgate container entrypoint (installed as /usr/local/bin/popgate-entrypoint;
# the image runs it under tini: ENTRYPOINT ["/usr/bin/tini", "--", ...]).
#
#   (no arguments) | serve [ARGS...]
#       1. check that the Kerberos replay cache directory exists and is writable
#          (exit 73 = EX_CANTCREAT with a hint about the volume to mount if not);
#       2. `popgate check-config` on the config file: the config and every file
#          it names (certificates, keys, user file, secrets, keytab, ...), as
#          serve loads them; if anything is wrong, print every problem and exit
#          with its code (78 = EX_CONFIG);
#       3. exec `node .../main.js serve --config FILE [ARGS...]` (the gateway
#          becomes tini's child: SIGTERM drains, SIGHUP reloads).
#       `--config FILE` / `-c FILE` in ARGS replaces POPGATE_CONFIG.
#   check-config [FILE]   validate FILE (default POPGATE_CONFIG)
#   hash-password ... | version | demo ... | help
#       passed to the popgate CLI unchanged
#   anything else         exec'd as a command (e.g. `sh` for debugging)
#
# Variables (all may be overridden, e.g. `docker run -e`; the tests use them to
# run this script against a checkout):
#   POPGATE_CONFIG      config file                      default /etc/popgate/popgate.yaml
#   POPGATE_RCACHE_DIR  directory checked before serve; set it to the config's
#                       kerberos.rcacheDir, or to "" to skip the check
#                                                        default /var/lib/popgate/rcache
#   POPGATE_NODE        Node.js binary                   default node
#   POPGATE_CLI         popgate's CLI entry point        default /app/dist/cli/main.js
#   POPGATE_SKIP_CHECK  1 = do not run check-config before serve (serve itself
#                       runs the same checks and refuses with exit 78) default 0
set -eu

POPGATE_CONFIG="${POPGATE_CONFIG:-/etc/popgate/popgate.yaml}"
POPGATE_RCACHE_DIR="${POPGATE_RCACHE_DIR-/var/lib/popgate/rcache}"
POPGATE_NODE="${POPGATE_NODE:-node}"
POPGATE_CLI="${POPGATE_CLI:-/app/dist/cli/main.js}"
POPGATE_SKIP_CHECK="${POPGATE_SKIP_CHECK:-0}"

say() { printf 'popgate-entrypoint: %s\n' "$*" >&2; }

popgate() { "$POPGATE_NODE" "$POPGATE_CLI" "$@"; }

check_rcache() {
  dir="$POPGATE_RCACHE_DIR"
  [ -n "$dir" ] || return 0
  if [ ! -d "$dir" ]; then
    say "the Kerberos replay cache directory $dir does not exist."
    say "Mount a writable volume there (Kubernetes: an emptyDir; docker run: --tmpfs $dir:uid=$(id -u),mode=0700"
    say "or -v NAME:$dir), or set POPGATE_RCACHE_DIR to your kerberos.rcacheDir (\"\" skips this check)."
    exit 73
  fi
  if [ ! -w "$dir" ] || [ ! -x "$dir" ]; then
    say "the Kerberos replay cache directory $dir is not writable by uid $(id -u)."
    say "Mount a writable volume there owned by (or group-writable for) uid $(id -u)"
    say "(Kubernetes: an emptyDir with securityContext.fsGroup; docker run: --tmpfs $dir:uid=$(id -u),mode=0700)."
    exit 73
  fi
}

serve() {
  config="$POPGATE_CONFIG"
  have_config=0
  prev=''
  for arg in "$@"; do
    case "$prev" in
      --config | -c) config="$arg"; have_config=1 ;;
    esac
    case "$arg" in
      --config=*) config="${arg#--config=}"; have_config=1 ;;
    esac
    prev="$arg"
  done

  # First: a missing volume gets a hint about what to mount.
  check_rcache

  if [ "$POPGATE_SKIP_CHECK" != 1 ]; then
    rc=0
    # What was checked and the effective config go to /dev/null; problems (stderr) stay visible.
    popgate check-config "$config" >/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
      say "configuration check failed for $config (exit $rc); not starting"
      exit "$rc"
    fi
    say "configuration $config is valid, and so is every file it names"
  fi

  if [ "$have_config" = 1 ]; then
    exec "$POPGATE_NODE" "$POPGATE_CLI" serve "$@"
  fi
  exec "$POPGATE_NODE" "$POPGATE_CLI" serve --config "$config" "$@"
}

if [ "$#" -eq 0 ]; then
  set -- serve
fi

case "$1" in
  serve)
    shift
    serve "$@"
    ;;
  check-config)
    shift
    if [ "$#" -eq 0 ]; then
      set -- "$POPGATE_CONFIG"
    fi
    exec "$POPGATE_NODE" "$POPGATE_CLI" check-config "$@"
    ;;
  hash-password | version | --version | demo | help | --help | -h)
    exec "$POPGATE_NODE" "$POPGATE_CLI" "$@"
    ;;
  -*)
    # Options only (e.g. `docker run IMAGE --config /x.yaml`): serve with them.
    serve "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
