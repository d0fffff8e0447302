#!/usr/bin/env bash
# zcp-agent.sh: the zcp deploy agent. Installs one release of one app on this instance.
#
# SSM Run Command runs it on EC2 instances (the zcp deploy document embeds this file
# unchanged) and the local transport runs it for each instance of a local fleet. It is plain
# bash with no dependency beyond coreutils, util-linux (flock, runuser), tar, gzip, curl, the
# AWS CLI for s3:// artifacts, and supervisorctl or systemctl.
#
# Inputs are environment variables, never arguments, and every one is validated before
# anything on the instance is touched:
#   ZCP_APP               app name (^[a-z][a-z0-9-]{0,30}[a-z0-9]$)
#   ZCP_VERSION           release version (^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$)
#   ZCP_ARTIFACT          s3://bucket/key of the release tar.gz, or an absolute file path
#   ZCP_SHA256            sha256 of the artifact, 64 lowercase hex digits
#   ZCP_APP_DIR           absolute path of the app's directory on this instance
#   ZCP_APP_USER          existing user that owns the app's files and runs installs
#   ZCP_SERVICE           supervisor program or systemd unit that runs the app
#   ZCP_PROCESS_MANAGER   supervisor | systemd
#   ZCP_HEALTH_URL        http(s) URL that answers 200 when the app is healthy
#   ZCP_HEALTH_TIMEOUT_S  seconds the new release has to become healthy (1..3600)
#   ZCP_KEEP_RELEASES     how many of the newest releases to keep (1..50); the current and
#                         the previous release are always kept
# Optional:
#   ZCP_APP_ROOT          the directory ZCP_APP_DIR must be (or be inside), compared after
#                         resolving links (default /opt/$ZCP_APP); the deploy document pins it
#                         from the stack's config
#   ZCP_STATE_DIR         directory for zcp's own state of this app dir (default, as root:
#                         /var/lib/zcp/<app>-<key>; otherwise under $XDG_STATE_HOME or
#                         ~/.local/state); it must not be inside the app dir, nor a symlink,
#                         nor writable by anyone but the agent's user
#   ZCP_SUPERVISOR_CONF   supervisord config file passed to `supervisorctl -c`, so that a
#                         supervisord with its own socket (one per app, or one per instance of
#                         a local fleet) is addressed instead of the system-wide one
#   ZCP_SUPERVISOR_URL    the same as a server URL passed to `supervisorctl -s`
#                         (unix:///path/to/supervisor.sock or http://127.0.0.1:PORT)
#   ZCP_INSTANCE_ID       reported as `instance` in the result (default: the host name)
#   ZCP_LOCK_DIR          existing directory for the lock file (default below); a local fleet
#                         keeps each instance's lock inside the instance
#   ZCP_SEQUENCE          the release's sequence in latest.json (0..999999999999, 0 or unset
#                         for none); recorded with the version in the state dir once the
#                         release is healthy, so boot converge never moves this instance (or
#                         an image baked from it) to an older pointer
#   ZCP_LOCK_WAIT_S       how long a deploy waits when a deploy of the same version holds the
#                         lock (default 300; 0 refuses at once, like any other version)
#   ZCP_PYTHON            absolute path of the interpreter for Python virtual environments
#                         (default: the first python3 of /usr/bin, /usr/local/bin, PATH)
#   AWS_ENDPOINT_URL      honoured for s3:// artifacts (an S3-compatible endpoint or emulator)
#   ZCP_ACTION            deploy (the default) or prepare-image: check the current release
#                         against its manifest and clear this instance's identity before an
#                         image is taken from it (see "release manifest" below)
#   ZCP_IMAGE_ROOT        the directory prepare-image treats as / when it clears machine-id,
#                         host keys and histories (default /); only tests set it, and it must
#                         be a directory owned by the agent's user and writable by it alone
#
# The app user is hostile until proven otherwise: the app's code, its dependencies' install
# scripts and anyone who gets its shell run as it. So, when the agent runs as root:
#   - the app user must not be root, nor a member of sudo, wheel or admin;
#   - ZCP_APP_DIR itself and the `current` link are root's (0755): the app user cannot
#     replace releases/, shared/ or current with links; every directory above it must be
#     root's and not writable by others (sticky directories such as /tmp excepted);
#   - everything inside releases/ and shared/ is created, moved and deleted by the app user
#     (runuser), never by root, so a link planted there reaches nothing the app user could
#     not reach anyway; lockfiles are read as the app user too;
#   - releases/, shared/, shared/venvs, shared/node and lockfiles that are symlinks are
#     refused (exit 2, reason "unsafe") before anything changes;
#   - zcp's markers and logs live in the root-owned state dir, never in the app dir.
#
# Layout under ZCP_APP_DIR:
#   releases/<version>/   one directory per release, extracted whole (setuid/setgid bits
#                         dropped; an artifact with device nodes or fifos is refused) and
#                         renamed into place; holds .venv or node_modules links to its
#                         dependency environment
#   current               symlink to releases/<version>, switched atomically
#   shared/               state of the app that outlives releases: venvs/<key>/ and
#                         node/<key>/ (dependency environments keyed by lockfile hash)
# Layout under the state dir (zcp's own, root-owned when the agent runs as root):
#   releases/<version>.sha256     the verified artifact checksum a release was extracted from
#   releases/<version>.activated  when it last became current (retention keeps the newest)
#   releases/<version>.manifest   every entry of the release as extracted from the verified
#                                 artifact (type, mode, size, sha256, link target)
#   envs/<venvs|node>-<key>       a dependency environment whose install completed
#   pending                       present while a switch is not yet verified healthy; names
#                                 the release to go back to, which the next run restores first
#   deploy.log                    the result line of every deploy that got as far as
#                                 changing something or finding nothing to change
#   deploy-detail.log             command output of those deploys
# The lock file lives outside the app dir (ZCP_LOCK_DIR, else /run/zcp as root, else
# /run/lock or the temp dir), is named after the app dir's real path (two spellings of one
# directory share one lock), and its descriptor is closed for every command the agent
# starts, so an install script that leaves a daemon behind cannot hold it.
# Artifacts are fetched into a temp dir outside the app dir.
#
# Output: a few progress lines, then one JSON line, always last, with status (deployed,
# unchanged, rolled_back, failed; prepared for prepare-image), version, previous, current,
# duration_ms, deps (installed, reused, none), app, instance, message, and reason (rejected,
# checksum, locked, unsafe; for prepare-image tampered, not_current, not_verified,
# no_manifest, unsettled) when the deploy was refused. Command output goes to the detail log: SSM keeps only 24,000
# characters of stdout.
# Exit codes: 0 deployed, unchanged or prepared; 1 failed (rolled back when a previous release
# existed), or no image may be taken; 2 rejected input, nothing touched; 3 another deploy holds the lock.

# SSM runs scripts with sh. Until the exec below, this file must stay POSIX sh; bash in
# POSIX mode (sh on some distributions) is re-executed as well.
case ":${SHELLOPTS:-}:" in *:posix:*) zcp_posix_mode=1 ;; *) zcp_posix_mode= ;; esac
if [ -z "${BASH_VERSION:-}" ] || [ -n "$zcp_posix_mode" ]; then
  if [ -z "${ZCP_AGENT_REEXEC:-}" ] && [ -f "$0" ] && command -v bash >/dev/null 2>&1; then
    ZCP_AGENT_REEXEC=1
    export ZCP_AGENT_REEXEC
    exec bash "$0" "$@"
  fi
  echo "zcp-agent: bash is required; run this file with bash" >&2
  printf '%s\n' '{"status":"failed","version":"","previous":null,"duration_ms":0,"reason":"rejected","message":"bash is required"}'
  exit 2
fi

set -Eeuo pipefail
shopt -s nullglob
umask 022
export LC_ALL=C
unset ZCP_AGENT_REEXEC

now_ms() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    local us=${EPOCHREALTIME/./}
    printf '%s\n' "$((10#$us / 1000))"
  else
    date +%s%3N
  fi
}

START_MS=$(now_ms)
readonly VERSION_RE='^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'

# What the result line reports; set as the deploy goes.
PREVIOUS=""
DEPS="none"
RESULT_PRINTED=0
RESULT_CODE=0
SWITCH_USER=0
APP_DIR=""
APP_USER=""
APP_UID=""
APP_GID=""
APP_HOME=""
# The app dir and the app root as the kernel resolves them (links followed).
APP_REAL=""
APP_ROOT=""
STATE_DIR=""
# The lock's descriptor: a fixed number, so every command the agent starts can close it.
readonly LOCK_FD=9
HEALTH_PROBLEM=""
# Set once the app dir holds the deploy log, so refused deploys never create it.
CAN_LOG=0
SWITCHED=0
# Set once the inputs are valid and the lock is held: only then is the app dir looked at.
INSPECTED=0
WORK=""
DETAIL=/dev/null
STAGING=""
FAILED_AT=""
INTERRUPTED=""
# What the deploy is doing, for the message when a step fails.
STEP=""

# --- output ----------------------------------------------------------------------------

say() { printf 'zcp-agent: %s\n' "$*"; }
warn() { printf 'zcp-agent: %s\n' "$*" >&2; }
# Command output goes to the detail log only; stdout stays small. No command the agent
# starts inherits the lock's descriptor (9>&-): a daemon left behind must not hold it.
quiet() { "$@" >>"$DETAIL" 2>&1 9>&-; }

json_string() {
  local s=${1:0:300}
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  s=${s//[^[:print:]]/}
  printf '"%s"' "$s"
}

json_or_null() {
  if [[ -n $1 ]]; then json_string "$1"; else printf 'null'; fi
}

current_version() {
  local target
  ((INSPECTED)) || return 0
  [[ -L $APP_DIR/current ]] || return 0
  target=$(readlink "$APP_DIR/current") || return 0
  target=${target%/}
  printf '%s' "${target##*/}"
}

instance_name() {
  if [[ -n ${ZCP_INSTANCE_ID:-} && ${ZCP_INSTANCE_ID} =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then
    printf '%s' "$ZCP_INSTANCE_ID"
  else
    hostname 2>/dev/null || uname -n
  fi
}

# report STATUS EXIT_CODE MESSAGE [REASON]: logs and prints the result line.
report() {
  local status=$1 code=$2 message=$3 reason=${4:-} line current
  current=$(current_version)
  line="{\"status\":$(json_string "$status")"
  line+=",\"version\":$(json_string "${ZCP_VERSION-}")"
  line+=",\"previous\":$(json_or_null "$PREVIOUS")"
  # The checksum the previous release was verified against: lets the runner roll this
  # instance back to it even when its artifact has left the bucket (the release is reused).
  local previous_sha=""
  if [[ -n ${PREVIOUS:-} && -n ${APP_DIR:-} ]]; then previous_sha=$(stored_sha "$PREVIOUS" 2>/dev/null) || previous_sha=""; fi
  line+=",\"previous_sha256\":$(json_or_null "$previous_sha")"
  line+=",\"current\":$(json_or_null "$current")"
  line+=",\"duration_ms\":$(($(now_ms) - START_MS))"
  line+=",\"deps\":$(json_string "$DEPS")"
  line+=",\"app\":$(json_string "${ZCP_APP-}")"
  line+=",\"instance\":$(json_string "$(instance_name)")"
  line+=",\"time\":$(json_string "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
  [[ -z $reason ]] || line+=",\"reason\":$(json_string "$reason")"
  line+=",\"message\":$(json_string "$message")}"
  if ((CAN_LOG)); then
    append_logs "$line" || warn "could not write the deploy log"
  fi
  if ((code != 0)) && [[ -s $DETAIL ]]; then
    warn "last lines of the command output:"
    tail -n 15 "$DETAIL" | cut -c1-200 >&2 || true
  fi
  RESULT_PRINTED=1
  RESULT_CODE=$code
  printf '%s\n' "$line"
}

# record_release_sequence: once the requested release runs healthy, the state dir says which
# release (sequence and version) it is; boot converge (the launch template's user data) skips
# a latest.json older than that. A deploy without a sequence forgets the old record, which
# would otherwise describe a release that no longer runs.
record_release_sequence() {
  [[ -n $STATE_DIR && -d $STATE_DIR && ! -L $STATE_DIR/sequence ]] || return 0
  if [[ ${ZCP_SEQUENCE:-0} == 0 ]]; then
    rm -f -- "$STATE_DIR/sequence"
  else
    printf '%s %s\n' "$ZCP_SEQUENCE" "$ZCP_VERSION" >"$STATE_DIR/sequence.tmp" &&
      mv -f -- "$STATE_DIR/sequence.tmp" "$STATE_DIR/sequence"
  fi
}

# finish STATUS EXIT_CODE MESSAGE [REASON]: reports, then exits (the EXIT trap cleans up).
finish() {
  if [[ $2 == 0 ]]; then record_release_sequence || warn "could not record the release sequence"; fi
  report "$@"
  exit "$2"
}

reject() {
  warn "rejected: $1"
  finish failed 2 "rejected: $1; nothing was changed" "${2:-rejected}"
}

# --- validation (nothing is touched before it passes) -----------------------------------

ERRORS=()
check() { # check NAME REGEX PROBLEM: NAME's value must match REGEX
  local name=$1 re=$2 problem=$3 value=${!1:-}
  if [[ -z $value ]]; then
    ERRORS+=("$name is required")
  elif ! [[ $value =~ $re ]]; then
    ERRORS+=("$name $problem")
  fi
}

# Absolute, without . or .. segments, empty segments or characters a shell would treat
# specially.
is_sane_abs_path() {
  local p=$1
  [[ $p =~ ^/[A-Za-z0-9._@+/-]{0,1023}$ ]] || return 1
  [[ $p/ != *//* && $p/ != */./* && $p/ != */../* ]] || return 1
}

int_in_range() { # int_in_range VALUE MIN MAX
  [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= $2 && 10#$1 <= $3))
}

validate_inputs() {
  check ZCP_APP '^[a-z][a-z0-9-]{0,30}[a-z0-9]$' 'must be 2-32 of a-z 0-9 - starting with a letter'
  check ZCP_VERSION "$VERSION_RE" 'must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'
  check ZCP_SHA256 '^[0-9a-f]{64}$' 'must be 64 lowercase hex digits'
  check ZCP_APP_USER '^[a-z_][a-z0-9_-]{0,31}$' 'must be a user name'
  check ZCP_SERVICE '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$' 'must be a supervisor program or systemd unit name'
  check ZCP_PROCESS_MANAGER '^(supervisor|systemd)$' 'must be supervisor or systemd'
  check ZCP_HEALTH_URL '^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~/%?=&+:,-]*)?$' \
    'must be an http:// or https:// URL without spaces or quotes'
  check ZCP_HEALTH_TIMEOUT_S '^[0-9]{1,4}$' 'must be a number of seconds, 1..3600'
  check ZCP_KEEP_RELEASES '^[0-9]{1,2}$' 'must be a count, 1..50'
  check ZCP_APP_DIR '^/' 'must be an absolute path'
  check ZCP_ARTIFACT '^(s3://|/)' 'must be s3://bucket/key or an absolute file path'

  if [[ ${ZCP_HEALTH_TIMEOUT_S-} =~ ^[0-9]{1,4}$ ]] && ! int_in_range "$ZCP_HEALTH_TIMEOUT_S" 1 3600; then
    ERRORS+=("ZCP_HEALTH_TIMEOUT_S must be 1..3600")
  fi
  if [[ ${ZCP_KEEP_RELEASES-} =~ ^[0-9]{1,2}$ ]] && ! int_in_range "$ZCP_KEEP_RELEASES" 1 50; then
    ERRORS+=("ZCP_KEEP_RELEASES must be 1..50")
  fi
  if [[ ${ZCP_HEALTH_URL-} =~ ^https?://[^/]*:([0-9]{1,5})(/|$) ]] && ! int_in_range "${BASH_REMATCH[1]}" 1 65535; then
    ERRORS+=("ZCP_HEALTH_URL has an invalid port")
  fi

  if [[ ${ZCP_APP_DIR-} == /* ]]; then
    APP_DIR=$ZCP_APP_DIR
    [[ $APP_DIR == / ]] || APP_DIR=${APP_DIR%/}
    if ! is_sane_abs_path "$APP_DIR"; then
      ERRORS+=("ZCP_APP_DIR must be an absolute path of A-Z a-z 0-9 . _ @ + - without . or .. segments")
    else
      case $APP_DIR in
        / | /bin | /boot | /dev | /etc | /home | /lib | /lib32 | /lib64 | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /usr/bin | /usr/lib | /usr/local | /usr/sbin | /usr/share | /var | /var/lib | /var/log)
          ERRORS+=("ZCP_APP_DIR must not be a system directory") ;;
      esac
    fi
  fi

  case ${ZCP_ARTIFACT-} in
    s3://*)
      if ! [[ $ZCP_ARTIFACT =~ ^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9._/+=@-]{1,1024}$ ]] ||
        [[ /$ZCP_ARTIFACT/ == */../* ]]; then
        ERRORS+=("ZCP_ARTIFACT must be s3://bucket/key with a key of A-Z a-z 0-9 . _ / + = @ -")
      fi ;;
    /*)
      if ! is_sane_abs_path "$ZCP_ARTIFACT"; then
        ERRORS+=("ZCP_ARTIFACT must be an absolute path without . or .. segments or special characters")
      fi ;;
  esac

  if [[ -n ${ZCP_SUPERVISOR_CONF:-} ]] && { ! is_sane_abs_path "$ZCP_SUPERVISOR_CONF" || [[ ! -f $ZCP_SUPERVISOR_CONF ]]; }; then
    ERRORS+=("ZCP_SUPERVISOR_CONF must be the absolute path of an existing supervisord config file")
  fi
  if [[ -n ${ZCP_SUPERVISOR_URL:-} ]] &&
    ! [[ $ZCP_SUPERVISOR_URL =~ ^(unix:///[A-Za-z0-9._@+/-]{1,200}|https?://(127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5})$ ]]; then
    ERRORS+=("ZCP_SUPERVISOR_URL must be unix:///path or http://127.0.0.1:PORT")
  fi
  if [[ -n ${ZCP_LOCK_DIR:-} ]] && { ! is_sane_abs_path "$ZCP_LOCK_DIR" || [[ ! -d $ZCP_LOCK_DIR ]]; }; then
    ERRORS+=("ZCP_LOCK_DIR must be the absolute path of an existing directory")
  fi
  if [[ -n ${ZCP_SEQUENCE:-} && ! ${ZCP_SEQUENCE} =~ ^(0|[1-9][0-9]{0,11})$ ]]; then
    ERRORS+=("ZCP_SEQUENCE must be a release sequence, 0..999999999999")
  fi
  if [[ -n ${ZCP_LOCK_WAIT_S:-} && ! ${ZCP_LOCK_WAIT_S} =~ ^[0-9]{1,4}$ ]]; then
    ERRORS+=("ZCP_LOCK_WAIT_S must be 0..9999 seconds")
  fi
  if [[ -n ${ZCP_PYTHON:-} ]] && { ! is_sane_abs_path "$ZCP_PYTHON" || [[ ! -x $ZCP_PYTHON ]]; }; then
    ERRORS+=("ZCP_PYTHON must be the absolute path of an executable")
  fi
  if [[ -n ${ZCP_APP_ROOT:-} ]] && ! is_sane_abs_path "$ZCP_APP_ROOT"; then
    ERRORS+=("ZCP_APP_ROOT must be an absolute path of A-Z a-z 0-9 . _ @ + - without . or .. segments")
  fi
  if [[ -n ${ZCP_STATE_DIR:-} ]] && ! is_sane_abs_path "$ZCP_STATE_DIR"; then
    ERRORS+=("ZCP_STATE_DIR must be an absolute path of A-Z a-z 0-9 . _ @ + - without . or .. segments")
  fi
  validate_action
  if [[ -n ${AWS_ENDPOINT_URL:-} ]] &&
    ! [[ $AWS_ENDPOINT_URL =~ ^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$ ]]; then
    ERRORS+=("AWS_ENDPOINT_URL must be an http(s) URL without a path")
  fi

  if ((${#ERRORS[@]} == 0)); then
    validate_app_root
    validate_user
    validate_tools
  fi
  if ((${#ERRORS[@]} > 0)); then
    local e more=""
    for e in "${ERRORS[@]}"; do warn "rejected: $e"; done
    ((${#ERRORS[@]} == 1)) || more=" (and $((${#ERRORS[@]} - 1)) more)"
    finish failed 2 "rejected: ${ERRORS[0]}$more; nothing was changed" rejected
  fi
}

# ZCP_ACTION (deploy, the default, or prepare-image) and ZCP_IMAGE_ROOT, the directory that
# prepare-image treats as / (tests point it at a scratch tree; the deploy document never sets it).
validate_action() {
  if [[ -n ${ZCP_ACTION:-} ]]; then
    if [[ $ZCP_ACTION =~ ^(deploy|prepare-image)$ ]]; then
      ACTION=$ZCP_ACTION
    else
      ERRORS+=("ZCP_ACTION must be deploy or prepare-image")
    fi
  fi
  [[ -n ${ZCP_IMAGE_ROOT:-} ]] || return 0
  local st
  if ! is_sane_abs_path "$ZCP_IMAGE_ROOT" || [[ -L $ZCP_IMAGE_ROOT || ! -d $ZCP_IMAGE_ROOT ]]; then
    ERRORS+=("ZCP_IMAGE_ROOT must be the absolute path of an existing directory, not a link")
  elif st=$(stat -c '%u %a' -- "$ZCP_IMAGE_ROOT") && { ((${st% *} != EUID)) || (((8#${st#* }) & 8#022)); }; then
    ERRORS+=("ZCP_IMAGE_ROOT must be owned by uid $EUID and writable by it alone")
  fi
}

# The app dir must be the configured root or inside it, both as written and as resolved:
# a link inside the root that leads elsewhere does not count as inside.
validate_app_root() {
  APP_ROOT=${ZCP_APP_ROOT:-/opt/$ZCP_APP}
  [[ $APP_ROOT == / ]] || APP_ROOT=${APP_ROOT%/}
  if [[ $APP_DIR != "$APP_ROOT" && $APP_DIR != "$APP_ROOT"/* ]]; then
    ERRORS+=("ZCP_APP_DIR must be $APP_ROOT or inside it (the configured app root)")
    return
  fi
  local real_root
  if ! real_root=$(realpath -m -- "$APP_ROOT") || ! APP_REAL=$(realpath -m -- "$APP_DIR"); then
    ERRORS+=("ZCP_APP_DIR cannot be resolved")
    return
  fi
  if [[ $APP_REAL != "$real_root" && $APP_REAL != "$real_root"/* ]]; then
    ERRORS+=("ZCP_APP_DIR resolves to $APP_REAL, outside the configured app root $APP_ROOT")
  fi
}

validate_user() {
  APP_USER=$ZCP_APP_USER
  if ! APP_UID=$(id -u -- "$APP_USER" 2>/dev/null); then
    ERRORS+=("ZCP_APP_USER: no such user on this instance")
    return
  fi
  APP_GID=$(id -g -- "$APP_USER")
  # Root would hand the release (and the next install) to a user who is root already, or
  # can become root: an app compromise must not be a root compromise.
  if ((APP_UID == 0)); then
    ERRORS+=("ZCP_APP_USER: $APP_USER has uid 0; the app must run as an unprivileged user")
    return
  fi
  if ((EUID == 0)); then
    local group
    for group in $(id -nG -- "$APP_USER"); do
      case $group in
        sudo | wheel | admin | root)
          ERRORS+=("ZCP_APP_USER: $APP_USER is a member of $group, which can become root")
          return ;;
      esac
    done
  fi
  # As root, files are handed to the app user and installs run as that user. Without root
  # (a local fleet), the agent can only act as itself.
  SWITCH_USER=0
  if ((EUID == 0)); then
    SWITCH_USER=1
  elif ((APP_UID != EUID)); then
    ERRORS+=("ZCP_APP_USER: the agent runs as uid $EUID and cannot act as another user without root")
  fi
}

validate_tools() {
  local tool
  local tools=(tar gzip sha256sum flock curl mktemp realpath stat)
  [[ $ZCP_ARTIFACT == s3://* ]] && tools+=(aws)
  ((SWITCH_USER)) && tools+=(runuser)
  case $ZCP_PROCESS_MANAGER in
    supervisor) tools+=(supervisorctl) ;;
    systemd) tools+=(systemctl) ;;
  esac
  for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || ERRORS+=("required command not found: $tool")
  done
}

# --- lock ----------------------------------------------------------------------------------

# Keyed by the real path: /opt/web and a link to it are one app dir, so one lock.
app_dir_key() { printf '%s' "$APP_REAL" | sha256sum | cut -c1-16; }

take_lock() {
  local dir key
  if [[ -n ${ZCP_LOCK_DIR:-} ]]; then
    dir=$ZCP_LOCK_DIR
  elif ((EUID == 0)); then
    dir=/run/zcp
    [[ -d $dir ]] || mkdir -m 0700 "$dir"
  elif [[ -d /run/lock && -w /run/lock ]]; then
    dir=/run/lock
  else
    dir=${TMPDIR:-/tmp}
  fi
  key=$(app_dir_key)
  LOCK_FILE="$dir/zcp-$ZCP_APP-$key.lock"
  if [[ -L $LOCK_FILE ]]; then
    reject "the lock file $LOCK_FILE is a symlink" unsafe
  fi
  exec 9>>"$LOCK_FILE"
  if ! flock -n "$LOCK_FD"; then
    # The holder names its version beside the lock. A deploy of the same version (a command
    # resent after a lost response, boot converge racing a release) waits a bounded time and
    # then finds the release current; any other version is refused at once.
    local holder wait_s=${ZCP_LOCK_WAIT_S:-300}
    holder=$(head -c 200 "$LOCK_FILE.holder" 2>/dev/null) || holder=""
    if [[ $holder == "$ZCP_VERSION" ]] && ((10#$wait_s > 0)); then
      say "a deploy of $ZCP_VERSION is already running here; waiting up to ${wait_s}s for it"
      flock -w "$wait_s" "$LOCK_FD" ||
        finish failed 3 "a deploy of $ZCP_VERSION held the lock for more than ${wait_s}s; nothing was changed" locked
    else
      warn "another deploy of $ZCP_APP into $APP_DIR is running"
      finish failed 3 "another deploy holds the lock; nothing was changed" locked
    fi
  fi
  # Through a fresh file renamed into place: the lock dir may be shared (/run/lock, the temp
  # dir), and a planted symlink must not redirect the write.
  local tmp
  tmp=$(mktemp "$LOCK_FILE.holder.XXXXXX") && printf '%s\n' "$ZCP_VERSION" >"$tmp" && mv -f -- "$tmp" "$LOCK_FILE.holder" ||
    rm -f -- "$tmp"
}

# --- pending marker: a switch not yet verified healthy ---------------------------------------

# Written (and flushed) before `current` moves, removed once the outcome is settled. SSM's
# execution timeout and CancelCommand SIGKILL the whole process group, so no trap runs; a
# reboot runs nothing either. Whoever runs next (a release, a rollback, boot converge) finds
# the marker and first puts back the release it names.
PENDING_FILE=""

mark_pending() {
  local tmp=$PENDING_FILE.tmp.$$
  printf '%s\n' "$1" >"$tmp"
  sync "$tmp" 2>/dev/null || sync
  mv -f -- "$tmp" "$PENDING_FILE"
  sync "$STATE_DIR" 2>/dev/null || true
}

clear_pending() {
  rm -f -- "$PENDING_FILE"
}

# An earlier run switched `current` and died before its health check: go back first.
revert_unverified_switch() {
  [[ -f $PENDING_FILE ]] || return 0
  local before now
  before=$(head -c 200 "$PENDING_FILE")
  before=${before%%$'\n'*}
  now=$(current_version)
  if [[ -n $before && $before =~ $VERSION_RE && -d $APP_DIR/releases/$before ]]; then
    if [[ $now != "$before" ]]; then
      warn "an earlier deploy switched to ${now:-nothing} and never verified it; reverting to $before"
      switch_current "$before"
      service_restart || warn "could not restart $ZCP_SERVICE on $before"
    fi
  elif [[ -z $before && -n $now ]]; then
    warn "an earlier first deploy of $now was never verified; stopping $ZCP_SERVICE"
    service_stop || true
    rm -f -- "$APP_DIR/current"
  fi
  clear_pending
}

# --- process manager and health -----------------------------------------------------------

supervisorctl_cmd() {
  local args=()
  [[ -z ${ZCP_SUPERVISOR_CONF:-} ]] || args+=(-c "$ZCP_SUPERVISOR_CONF")
  [[ -z ${ZCP_SUPERVISOR_URL:-} ]] || args+=(-s "$ZCP_SUPERVISOR_URL")
  supervisorctl "${args[@]}" "$@" 9>&-
}

service_restart() {
  case $ZCP_PROCESS_MANAGER in
    supervisor)
      # stop + start rather than restart: restart reports an error for a program that is
      # not running (first deploy, or one that died), and start waits for startsecs.
      quiet supervisorctl_cmd stop "$ZCP_SERVICE" || true
      quiet supervisorctl_cmd start "$ZCP_SERVICE" || return 1 ;;
    systemd)
      quiet systemctl restart "$ZCP_SERVICE" ;;
  esac
}

service_stop() {
  case $ZCP_PROCESS_MANAGER in
    supervisor) quiet supervisorctl_cmd stop "$ZCP_SERVICE" || true ;;
    systemd) quiet systemctl stop "$ZCP_SERVICE" || true ;;
  esac
}

service_running() {
  local out
  case $ZCP_PROCESS_MANAGER in
    supervisor)
      out=$(supervisorctl_cmd status "$ZCP_SERVICE" 2>&1) || true
      # One line per process (a group has several): all must be RUNNING.
      awk 'NF { n++; if ($2 != "RUNNING") bad = 1 } END { exit (n > 0 && !bad) ? 0 : 1 }' <<<"$out" ;;
    systemd)
      systemctl is-active --quiet "$ZCP_SERVICE" 9>&- ;;
  esac
}

LAST_HTTP=""
health_probe() {
  # The health URL is the instance's own endpoint: never through a proxy.
  LAST_HTTP=$(curl --noproxy '*' --proto '=http,https' --silent --output /dev/null \
    --write-out '%{http_code}' --connect-timeout 2 --max-time 3 "$ZCP_HEALTH_URL" 2>/dev/null) || true
  [[ $LAST_HTTP == 200 ]]
}

# HTTP first: it is cheap, and supervisorctl is a Python start-up per call.
healthy_now() { health_probe && service_running; }

wait_healthy() {
  local deadline=$((SECONDS + 10#$ZCP_HEALTH_TIMEOUT_S))
  while true; do
    if healthy_now; then return 0; fi
    ((SECONDS < deadline)) || break
    sleep 0.5
  done
  local state=running
  service_running || state="not running"
  HEALTH_PROBLEM="no HTTP 200 from the health URL within ${ZCP_HEALTH_TIMEOUT_S}s (last answer: ${LAST_HTTP:-none}, process $state)"
  return 1
}

# --- files ---------------------------------------------------------------------------------

# Dependencies are installed offline only: an instance never contacts a package registry.
# The artifact carries what `zcp build` resolved (.zcp/wheels, .zcp/npm-cache); pip is told
# to use no index and to read no pip.conf of the image (which could add an index or a remote
# find-links; pip's docs: PIP_CONFIG_FILE=os.devnull loads no configuration file), npm runs
# with --offline (npm docs, config "offline": never hit the network).
OFFLINE_ENV=(PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null npm_config_offline=true npm_config_audit=false npm_config_fund=false)

# Runs a command as the app user, with a clean environment and without the lock's
# descriptor. As root this is the only way anything inside releases/ or shared/ changes.
as_app_user() {
  if ((SWITCH_USER)); then
    runuser -u "$APP_USER" -- env -i PATH="$PATH" HOME="$APP_HOME" LANG=C.UTF-8 \
      PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "${OFFLINE_ENV[@]}" \
      npm_config_cache="$APP_DIR/shared/.npm" npm_config_update_notifier=false "$@" 9>&-
  else
    env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "${OFFLINE_ENV[@]}" "$@" 9>&-
  fi
}

give_to_app_user() { # give_to_app_user PATH...: chown without following links
  ((EUID == 0)) || return 0
  chown -h -- "$APP_UID:$APP_GID" "$@"
}

# unsafe MESSAGE: refuses the deploy because of something the app user could have planted.
unsafe() {
  warn "refused: $1"
  local tail="nothing was changed"
  [[ -z $PREVIOUS ]] || tail="$PREVIOUS is still current"
  finish failed 2 "refused: $1; zcp never follows links the app user controls; $tail" unsafe
}

# A directory zcp uses inside the app dir: absent, or a real directory (not a link) that
# resolves to itself inside the app dir.
check_app_path() {
  local p=$1 real
  [[ -e $p || -L $p ]] || return 0
  [[ ! -L $p ]] || unsafe "${p#"$APP_DIR"/} in $APP_DIR is a symlink"
  [[ -d $p ]] || unsafe "${p#"$APP_DIR"/} in $APP_DIR is not a directory"
  real=$(realpath -e -- "$p") || unsafe "${p#"$APP_DIR"/} in $APP_DIR cannot be resolved"
  [[ $real == "$APP_REAL"/* ]] || unsafe "${p#"$APP_DIR"/} in $APP_DIR resolves outside it, to $real"
}

# Every directory from / down to the app dir (resolved) must be root's and not writable by
# anyone else, or the app user could swap the app dir itself for a link. A sticky directory
# (/tmp) protects root's entries from other users, so it may be world-writable.
check_app_ancestors() {
  ((EUID == 0)) || return 0
  local d=$APP_REAL st
  while :; do
    if [[ -e $d ]]; then
      st=$(stat -c '%u %a' -- "$d")
      local uid=${st% *} mode=$((8#${st#* }))
      if ((uid != 0)) && [[ $d != "$APP_REAL" ]]; then
        reject "$d (above the app dir) is owned by uid $uid, not root" unsafe
      fi
      if [[ $d != "$APP_REAL" ]] && ((mode & 8#022)) && ! ((mode & 8#1000)); then
        reject "$d (above the app dir) is writable by group or others" unsafe
      fi
    fi
    [[ $d != / ]] || break
    d=$(dirname -- "$d")
  done
}

# Checks the layout before the deploy looks at anything in it.
check_app_layout() {
  check_app_ancestors
  if [[ -e $APP_DIR/current && ! -L $APP_DIR/current ]]; then
    reject "$APP_DIR/current exists and is not a symlink" unsafe
  fi
  local d
  for d in "$APP_DIR/releases" "$APP_DIR/shared" "$APP_DIR/shared/venvs" "$APP_DIR/shared/node" "$APP_DIR/shared/.npm"; do
    check_app_path "$d"
  done
}

# The state dir: zcp's markers and logs, the agent user's alone.
state_dir_default() {
  local key
  key=$(app_dir_key)
  if ((EUID == 0)); then
    printf '/var/lib/zcp/%s-%s' "$ZCP_APP" "$key"
  else
    printf '%s/zcp/%s-%s' "${XDG_STATE_HOME:-${HOME:-/nonexistent}/.local/state}" "$ZCP_APP" "$key"
  fi
}

check_state_dir() {
  local d=$1 real st
  if [[ -L $d ]]; then reject "the state dir $d is a symlink" unsafe; fi
  [[ -d $d ]] || return 0
  real=$(realpath -e -- "$d")
  if [[ $real == "$APP_REAL" || $real == "$APP_REAL"/* ]]; then
    reject "the state dir $d is inside the app dir" unsafe
  fi
  st=$(stat -c '%u %a' -- "$d")
  if ((${st% *} != EUID)) || (((8#${st#* }) & 8#022)); then
    reject "the state dir $d must be owned by uid $EUID and writable by it alone" unsafe
  fi
}

prepare_state_dir() {
  STATE_DIR=${ZCP_STATE_DIR:-$(state_dir_default)}
  check_state_dir "$STATE_DIR"
  if [[ -z ${ZCP_STATE_DIR:-} && $EUID == 0 && ! -d /var/lib/zcp ]]; then
    mkdir -m 0755 /var/lib/zcp
  fi
  # Its parent must exist (a configured state dir is not invented out of nothing).
  [[ -d $STATE_DIR ]] || mkdir -m 0700 -- "$STATE_DIR"
  check_state_dir "$STATE_DIR"
  local d
  for d in "$STATE_DIR/releases" "$STATE_DIR/envs"; do
    if [[ -L $d ]]; then reject "$d is a symlink" unsafe; fi
    [[ -d $d ]] || mkdir -m 0700 -- "$d"
  done
}

make_app_dirs() {
  local d
  prepare_state_dir
  if [[ ! -d $APP_DIR ]]; then
    mkdir -p -- "$APP_DIR"
  fi
  # The app dir is root's (0755): the app user can change what is inside releases/ and
  # shared/, never which directories those are, nor where current points.
  if ((EUID == 0)); then
    chown -h -- 0:0 "$APP_DIR"
  fi
  chmod 0755 "$APP_DIR"
  for d in "$APP_DIR/releases" "$APP_DIR/shared"; do
    if [[ ! -d $d ]]; then
      mkdir -- "$d"
      chmod 0755 "$d"
    fi
    give_to_app_user "$d"
  done
  CAN_LOG=1
  APP_HOME=$(getent passwd "$APP_USER" | cut -d: -f6) || true
  [[ -n $APP_HOME && -d $APP_HOME ]] || APP_HOME=$APP_DIR/shared
}

append_logs() {
  local line=$1 log=$STATE_DIR/deploy.log detail=$STATE_DIR/deploy-detail.log
  [[ -n $STATE_DIR && -d $STATE_DIR ]] || return 0
  printf '%s\n' "$line" >>"$log"
  if [[ -s $DETAIL && $DETAIL != /dev/null ]]; then
    # One generation of history is enough to debug the last deploys.
    if [[ -f $detail ]] && (($(stat -c %s "$detail") > 1048576)); then
      mv -f "$detail" "$detail.1"
    fi
    {
      printf '=== %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ZCP_APP" "$ZCP_VERSION"
      tail -c 262144 "$DETAIL"
    } >>"$detail"
  fi
}

stored_sha() { # the checksum a release was verified against, if any
  local f=$STATE_DIR/releases/$1.sha256
  [[ -n $STATE_DIR && -f $f && -d $APP_DIR/releases/$1 && ! -L $APP_DIR/releases/$1 ]] && head -c 64 "$f"
}

fetch_artifact() {
  local dest=$WORK/artifact.tar.gz
  case $ZCP_ARTIFACT in
    s3://*)
      local args=(s3 cp --only-show-errors --no-progress)
      [[ -z ${AWS_ENDPOINT_URL:-} ]] || args+=(--endpoint-url "$AWS_ENDPOINT_URL")
      quiet aws "${args[@]}" "$ZCP_ARTIFACT" "$dest" || return 1 ;;
    *)
      [[ -f $ZCP_ARTIFACT && -r $ZCP_ARTIFACT ]] || { echo "not a readable file: $ZCP_ARTIFACT" >>"$DETAIL"; return 1; }
      quiet cp -- "$ZCP_ARTIFACT" "$dest" || return 1 ;;
  esac
  ARTIFACT_FILE=$dest
}

# Device nodes, fifos and sockets have no place in a release; refused before extraction.
check_artifact_entries() {
  local special
  special=$(tar -tvzf "$ARTIFACT_FILE" 2>>"$DETAIL" | grep -m1 -E '^[bcps]') || true
  if [[ -n $special ]]; then
    reject "the artifact contains a device node, fifo or socket (${special##* })"
  fi
}

# Lockfiles decide what is installed; one that is a link could make the install read a
# file the app user cannot (or should not) see.
check_lockfiles() {
  local dir=$1 f
  for f in requirements.txt package.json package-lock.json; do
    if [[ -L $dir/$f ]]; then
      [[ -z $STAGING ]] || { as_app_user rm -rf -- "$STAGING"; STAGING=""; }
      unsafe "$f of release $ZCP_VERSION is a symlink"
    fi
  done
}

extract_release() {
  local release=$APP_DIR/releases/$ZCP_VERSION
  # Extract beside the final place and rename: a half-extracted release never exists under
  # its version's name. The app user extracts, so every file is theirs from the start and
  # tar can create nothing the app user could not.
  STAGING=$(as_app_user mktemp -d "$APP_DIR/releases/.incoming-$ZCP_VERSION.XXXXXX")
  # With umask 022 whatever the login defaults say: the release manifest expects these modes.
  (cd "$STAGING" && as_app_user sh -c 'umask 022 && exec "$@"' zcp-extract tar -xzf - --no-same-owner --no-same-permissions -C "$STAGING") <"$ARTIFACT_FILE" >>"$DETAIL" 2>&1 || return 1
  # The archive's root entry carries the packager's mode (often a 0700 temp dir); setuid and
  # setgid bits are never kept, whoever packaged them.
  quiet as_app_user chmod 0755 "$STAGING"
  quiet as_app_user find "$STAGING" -xdev -perm /6000 ! -type l -exec chmod ug-s {} +
  check_lockfiles "$STAGING"
  if [[ -e $release || -L $release ]]; then
    quiet as_app_user rm -rf -- "$release"
  fi
  quiet as_app_user mv -T -- "$STAGING" "$release"
  STAGING=""
  printf '%s\n' "$ZCP_SHA256" >"$STATE_DIR/releases/$ZCP_VERSION.sha256"
}

python_for_venvs() {
  local p
  if [[ -n ${ZCP_PYTHON:-} ]]; then printf '%s' "$ZCP_PYTHON"; return 0; fi
  for p in /usr/bin/python3 /usr/local/bin/python3; do
    [[ -x $p ]] && { printf '%s' "$p"; return 0; }
  done
  command -v python3
}

system_pip_can_target() {
  local version
  version=$("$1" -m pip --version 2>/dev/null | awk '{ print $2 }') || return 1
  [[ $version =~ ^[0-9]+\.[0-9]+ ]] || return 1
  [[ $(printf '%s\n%s\n' 22.3 "$version" | sort -V | head -n1) == 22.3 ]]
}

# key_for FILE EXTRA: the environment key of a lockfile; EXTRA names the interpreter, so a
# new Python or Node on the image gets a fresh environment. The lockfile is read as the app
# user: root reads nothing of the app's tree that the app user could point elsewhere.
key_for() {
  local content
  content=$(as_app_user cat -- "$1") || return 1
  { printf '%s' "$content"; printf '\n%s\n' "$2"; } | sha256sum | cut -c1-16
}

# env_ready KIND KEY: the environment's install completed (recorded in the state dir) and
# it is still a real directory.
env_ready() {
  local dir=$APP_DIR/shared/$1/$2
  [[ -f $STATE_DIR/envs/$1-$2 && -d $dir && ! -L $dir ]]
}

# Dependency environments live in shared/, keyed by lockfile: a release whose lockfile
# equals the current release's reuses the current environment. Decided before the switch,
# while the current release still runs. Everything here runs as the app user.
install_python_deps() {
  local release=$1 py pyid key env
  py=$(python_for_venvs) || { echo "no python3 found for requirements.txt" >>"$DETAIL"; return 1; }
  pyid="$py $("$py" -c 'import sys; print(sys.version.split()[0])' 2>>"$DETAIL")"
  key=$(key_for "$release/requirements.txt" "$pyid")
  env=$APP_DIR/shared/venvs/$key
  if env_ready venvs "$key"; then
    [[ $DEPS == installed ]] || DEPS=reused
    say "python dependencies: reusing shared/venvs/$key"
  else
    say "python dependencies: installing into shared/venvs/$key"
    rm -f -- "$STATE_DIR/envs/venvs-$key"
    quiet as_app_user mkdir -p -- "$APP_DIR/shared/venvs"
    check_app_path "$APP_DIR/shared/venvs"
    quiet as_app_user rm -rf -- "$env"
    # Created at its final path (a venv's scripts name their own path), complete only when
    # the state dir records it. With a system pip that can target another interpreter
    # (22.3+), the venv needs no pip of its own: seeding one takes seconds, longer than the
    # install. Offline: no index, only the wheels the build put in the artifact (and what the
    # lockfile itself names, such as a vendored directory); built artifacts are hash-checked.
    local pip_args=(install --quiet --no-index)
    if [[ -d $release/.zcp/wheels ]]; then pip_args+=(--find-links "$release/.zcp/wheels" --require-hashes); fi
    pip_args+=(-r requirements.txt)
    if system_pip_can_target "$py"; then
      (cd "$release" && quiet as_app_user "$py" -m venv --without-pip "$env") || return 1
      (cd "$release" && quiet as_app_user "$py" -m pip --python "$env/bin/python" "${pip_args[@]}") || return 1
    else
      # A venv seeded by ensurepip: its pip comes from the interpreter's own bundled wheel.
      (cd "$release" && quiet as_app_user "$py" -m venv "$env") || return 1
      (cd "$release" && quiet as_app_user "$env/bin/python" -m pip "${pip_args[@]}") || return 1
    fi
    : >"$STATE_DIR/envs/venvs-$key"
    DEPS=installed
  fi
  quiet as_app_user rm -rf -- "$release/.venv"
  quiet as_app_user ln -s "../../shared/venvs/$key" "$release/.venv"
  DEP_LINKS+=(".venv"$'\t'"../../shared/venvs/$key")
}

install_node_deps() {
  local release=$1 nodeid key env
  command -v npm >/dev/null 2>&1 || { echo "npm not found for package-lock.json" >>"$DETAIL"; return 1; }
  nodeid="node $(node --version 2>>"$DETAIL" || true)"
  key=$(key_for "$release/package-lock.json" "$nodeid")
  env=$APP_DIR/shared/node/$key
  if env_ready node "$key"; then
    [[ $DEPS == installed ]] || DEPS=reused
    say "node dependencies: reusing shared/node/$key"
  else
    say "node dependencies: installing into shared/node/$key"
    rm -f -- "$STATE_DIR/envs/node-$key"
    quiet as_app_user mkdir -p -- "$APP_DIR/shared/node"
    check_app_path "$APP_DIR/shared/node"
    quiet as_app_user rm -rf -- "$env"
    quiet as_app_user mkdir -p -- "$env"
    quiet as_app_user cp -- "$release/package.json" "$release/package-lock.json" "$env/"
    # Offline: from the npm cache the build put in the artifact; with no cache only a
    # lockfile without dependencies installs.
    local npm_args=(ci --offline --omit=dev --no-audit --no-fund --loglevel=error)
    if [[ -d $release/.zcp/npm-cache ]]; then npm_args+=(--cache "$release/.zcp/npm-cache"); fi
    (cd "$env" && quiet as_app_user npm "${npm_args[@]}") || return 1
    # A lockfile without dependencies installs nothing; the release's link still resolves.
    [[ -d $env/node_modules ]] || quiet as_app_user mkdir "$env/node_modules"
    : >"$STATE_DIR/envs/node-$key"
    DEPS=installed
  fi
  quiet as_app_user rm -rf -- "$release/node_modules"
  quiet as_app_user ln -s "../../shared/node/$key/node_modules" "$release/node_modules"
  DEP_LINKS+=("node_modules"$'\t'"../../shared/node/$key/node_modules")
}

install_dependencies() {
  local release=$APP_DIR/releases/$ZCP_VERSION
  DEPS=none
  if [[ -f $release/requirements.txt ]]; then install_python_deps "$release" || return 1; fi
  if [[ -f $release/package-lock.json ]]; then install_node_deps "$release" || return 1; fi
  return 0
}

# Atomic: a new link under a temporary name, renamed over `current` (rename(2)). Both live
# in the app dir, which is root's.
switch_current() {
  local version=$1 tmp=$APP_DIR/.current.$$
  rm -f -- "$tmp"
  ln -s "releases/$version" "$tmp"
  mv -T -- "$tmp" "$APP_DIR/current"
  # Retention keeps the most recently activated releases.
  printf '%s\n' "$(now_ms)" >"$STATE_DIR/releases/$version.activated"
}

# Keeps the newest ZCP_KEEP_RELEASES releases (by activation) plus current and previous;
# removes leftovers of interrupted deploys and environments no kept release uses. Deletes as
# the app user, and a link is removed as a link: nothing outside the app dir is reached.
prune() {
  local current kept=0 line version d target
  local -A keep=() used=()
  current=$(current_version)
  check_app_layout
  while read -r _ version; do
    if ((kept < 10#$ZCP_KEEP_RELEASES)) || [[ $version == "$current" || $version == "$PREVIOUS" ]]; then
      keep[$version]=1
      kept=$((kept + 1))
    fi
  done < <(for d in "$APP_DIR"/releases/*/; do
    d=${d%/}
    version=${d##*/}
    [[ $version =~ $VERSION_RE && ! -L $d ]] || continue
    line=$(head -c 20 "$STATE_DIR/releases/$version.activated" 2>/dev/null) || line=0
    [[ $line =~ ^[0-9]+$ ]] || line=0
    printf '%s %s\n' "$line" "$version"
  done | sort -k1,1nr -k2,2r)
  for d in "$APP_DIR"/releases/*; do
    version=${d##*/}
    if [[ -L $d ]]; then
      quiet as_app_user rm -f -- "$d"
    elif [[ -d $d && -z ${keep[$version]:-} ]]; then
      say "removing old release $version"
      quiet as_app_user rm -rf -- "$d"
    fi
  done
  for d in "$STATE_DIR"/releases/*.sha256; do
    version=${d##*/}
    version=${version%.sha256}
    [[ -d $APP_DIR/releases/$version ]] || rm -f -- "$d" "$STATE_DIR/releases/$version.activated" "$STATE_DIR/releases/$version.manifest"
  done
  # The lock is held: any staging directory or temporary link is a leftover.
  for d in "$APP_DIR"/releases/.incoming-*; do quiet as_app_user rm -rf -- "$d"; done
  for d in "$APP_DIR"/.current.*; do [[ -L $d ]] && rm -f -- "$d"; done
  for d in "$APP_DIR"/releases/*/.venv "$APP_DIR"/releases/*/node_modules; do
    [[ -L $d ]] || continue
    target=$(readlink "$d")
    target=${target%/node_modules}
    target=${target##*/}
    [[ -z $target ]] || used[$target]=1
  done
  local kind
  for kind in venvs node; do
    for d in "$APP_DIR/shared/$kind"/*; do
      [[ -z ${used[${d##*/}]:-} ]] || continue
      if [[ -L $d ]]; then quiet as_app_user rm -f -- "$d"; else quiet as_app_user rm -rf -- "$d"; fi
      rm -f -- "$STATE_DIR/envs/$kind-${d##*/}"
    done
  done
}

# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
  [[ -z $STAGING ]] || as_app_user rm -rf -- "$STAGING" 2>/dev/null || true
  [[ -z $WORK ]] || rm -rf -- "$WORK" 2>/dev/null || true
}

# A command failed unexpectedly (set -e) or the agent was signalled: never leave a switched,
# unchecked release behind.
# shellcheck disable=SC2317  # reached through the EXIT trap
on_exit() {
  local rc=$?
  set +e
  trap - ERR
  if ((RESULT_PRINTED == 0)); then
    local message="${STEP:-the deploy} failed"
    if [[ -n $INTERRUPTED ]]; then
      message="interrupted by SIG$INTERRUPTED while ${STEP:-deploying}"
    else
      warn "${STEP:-the deploy} failed${FAILED_AT:+ at $FAILED_AT}"
    fi
    if ((!SWITCHED)) && [[ -n $PREVIOUS ]]; then
      message+="; $PREVIOUS is still current"
    elif ((!SWITCHED)); then
      message+="; nothing was switched"
    fi
    if ((SWITCHED)) && [[ -n $PREVIOUS ]]; then
      if switch_current "$PREVIOUS" && clear_pending && service_restart && wait_healthy; then
        report rolled_back 1 "$message; rolled back to $PREVIOUS"
      else
        report failed 1 "$message; rolling back to $PREVIOUS did not make it healthy"
      fi
    else
      if ((SWITCHED)); then
        service_stop
        rm -f -- "$APP_DIR/current"
        clear_pending
      fi
      report failed 1 "$message"
    fi
  fi
  cleanup
  ((RESULT_PRINTED == 0)) || rc=$RESULT_CODE
  exit "$rc"
}

# --- release manifest and image preparation ------------------------------------------------
#
# An image baked from an instance carries whatever is on its disk, and the app user can write
# its release tree. So, at deploy time, root records a manifest of the release (type, mode,
# size and sha256 of every file, link targets) in the state dir, taken from the verified
# artifact extracted again into a private directory the app user cannot reach: never from the
# tree the app user extracted, which its processes could change while it is read. Before an
# image is taken (ZCP_ACTION=prepare-image), root compares the current release with that
# manifest and refuses on any difference; only then does it clear what makes this instance
# itself (machine-id, SSH host keys, zcp's deploy logs, shell histories), so every instance
# booted from the image gets a fresh identity.
#
# A manifest has one line per entry below the release dir, sorted bytewise:
#   TYPE <tab> MODE <tab> SIZE <tab> DIGEST <tab> PATH
# TYPE as find's %y (f file, d directory, l link, ...); MODE in octal, setuid/setgid/sticky
# included, for everything but links; SIZE for files; DIGEST the sha256 of a file or the
# target of a link; "-" where a field does not apply. Paths and targets are escaped (\\, \t,
# \n), so every entry is one line.

ACTION=deploy
# The manifest of the artifact being deployed, before the agent adds its dependency links.
BASE_MANIFEST=""
# The links the agent puts into a release, as "NAME<tab>TARGET" (.venv, node_modules).
DEP_LINKS=()
ESCAPED=""

manifest_escape() { # sets ESCAPED to $1 with \, tab and newline escaped
  local s=${1//\\/\\\\}
  s=${s//$'\t'/\\t}
  ESCAPED=${s//$'\n'/\\n}
}

# manifest_of DIR [trusted]: the manifest of the tree below DIR, read without following a link:
# find lists entries without following links, and a file is opened with O_NOFOLLOW, without
# blocking (a fifo swapped in cannot hang root) and read no further than the size just listed
# (nor can a device reached through a swapped directory). Fails if the listing fails. A
# `trusted` tree (root's private extraction, which nobody else can change) is hashed in one
# sha256sum run instead of one process per file.
manifest_of() {
  local dir=$1 trusted=${2:-}
  local -A hashes=()
  if [[ $trusted == trusted ]]; then
    local line
    # A name with a backslash or newline comes out escaped (the line starts with \): those few
    # are read one by one below.
    while IFS= read -r line; do
      [[ $line == \\* ]] || hashes[${line:66}]=${line:0:64}
    done < <(find -P "$dir" -type f -exec sha256sum -- {} + 9>&-)
  fi
  find -P "$dir" -mindepth 1 -printf '%y\0%m\0%s\0%P\0%l\0' 9>&- | {
    local type mode size path target digest
    while IFS= read -r -d '' type && IFS= read -r -d '' mode && IFS= read -r -d '' size &&
      IFS= read -r -d '' path && IFS= read -r -d '' target; do
      if [[ $type == f ]]; then
        digest=${hashes[$dir/$path]:-}
        if [[ -z $digest ]]; then
          digest=$(dd if="$dir/$path" iflag=nofollow,nonblock,count_bytes count=$((size + 1)) bs=65536 status=none 2>/dev/null 9>&- |
            sha256sum) || digest=unreadable
          digest=${digest%% *}
        fi
      fi
      manifest_escape "$path"
      path=$ESCAPED
      case $type in
        f) printf 'f\t%s\t%s\t%s\t%s\n' "$mode" "$size" "$digest" "$path" ;;
        d) printf 'd\t%s\t-\t-\t%s\n' "$mode" "$path" ;;
        l)
          manifest_escape "$target"
          printf 'l\t-\t-\t%s\t%s\n' "$ESCAPED" "$path" ;;
        *) printf '%s\t%s\t-\t-\t%s\n' "$type" "$mode" "$path" ;;
      esac
    done
  } | LC_ALL=C sort
}

# The manifest of the verified artifact as extract_release leaves it: extracted by root into a
# private directory with the same options and umask, setuid/setgid bits cleared.
manifest_from_artifact() {
  local tree=$WORK/manifest-tree
  mkdir -m 0700 -- "$tree"
  (umask 022 && tar -xzf "$ARTIFACT_FILE" --no-same-owner --no-same-permissions -C "$tree") >>"$DETAIL" 2>&1 9>&- || return 1
  quiet find -P "$tree" -mindepth 1 -perm /6000 ! -type l -exec chmod ug-s {} +
  BASE_MANIFEST=$WORK/manifest.base
  manifest_of "$tree" trusted >"$BASE_MANIFEST"
  rm -rf -- "$tree"
}

# Stores the manifest of the release being deployed, with the dependency links the agent just
# made in place of whatever the artifact had under those names. A reused release starts from
# the manifest recorded when it was extracted.
record_manifest() {
  local file=$STATE_DIR/releases/$ZCP_VERSION.manifest base=$BASE_MANIFEST link names=""
  [[ -n $base ]] || base=$file
  if [[ ! -f $base || -L $base ]]; then
    warn "release $ZCP_VERSION has no manifest (extracted by an older agent); no image can be taken from it until it is deployed again"
    return 0
  fi
  for link in "${DEP_LINKS[@]}"; do names+="${link%%$'\t'*} "; done
  local tmp
  tmp=$(mktemp "$file.XXXXXX")
  {
    awk -F'\t' -v names="$names" '
      BEGIN { n = split(names, skip, " ") }
      { for (i = 1; i <= n; i++) if ($5 == skip[i] || index($5, skip[i] "/") == 1) next; print }
    ' "$base"
    for link in "${DEP_LINKS[@]}"; do
      printf 'l\t-\t-\t%s\t%s\n' "${link#*$'\t'}" "${link%%$'\t'*}"
    done
  } | LC_ALL=C sort >"$tmp"
  mv -f -- "$tmp" "$file"
}

manifest_has() { # manifest_has FILE TYPE PATH (PATH escaped as in a manifest)
  awk -F'\t' -v t="$2" -v p="$3" '$1 == t && $5 == p { found = 1; exit } END { exit !found }' "$1"
}

# The differences between two manifests, one "PATH: what" line each, sorted by path.
manifest_differences() {
  local expected=$1 actual=$2
  LC_ALL=C comm -23 "$expected" "$actual" >"$WORK/only-expected"
  LC_ALL=C comm -13 "$expected" "$actual" >"$WORK/only-actual"
  awk -F'\t' '
    function kind(t) {
      return t == "f" ? "file" : t == "d" ? "directory" : t == "l" ? "link" : t == "p" ? "fifo" : t == "s" ? "socket" : "special file (" t ")"
    }
    function what(t, target) { return t == "l" ? "a link to " target : "a " kind(t) }
    FILENAME == ARGV[1] { want[$5] = $0; next }
    { have[$5] = $0 }
    END {
      for (p in want) {
        split(want[p], w, "\t")
        if (!(p in have)) { print p ": " kind(w[1]) " missing"; continue }
        split(have[p], h, "\t")
        if (w[1] != h[1]) { print p ": was " what(w[1], w[4]) ", now " what(h[1], h[4]); continue }
        d = ""
        if (w[2] != h[2]) {
          d = "mode " w[2] " -> " h[2]
          if (h[2] ~ /^[2-7][0-7][0-7][0-7]$/ && w[2] !~ /^[2-7][0-7][0-7][0-7]$/) d = d " (setuid/setgid)"
        }
        if (w[1] == "l" && w[4] != h[4]) d = (d ? d ", " : "") "target " w[4] " -> " h[4]
        else if (w[3] != h[3] || w[4] != h[4]) d = (d ? d ", " : "") "content changed"
        print p ": " (d ? d : "changed")
      }
      for (p in have) if (!(p in want)) { split(have[p], h, "\t"); print p ": unexpected " what(h[1], h[4]) }
    }
  ' "$WORK/only-expected" "$WORK/only-actual" | LC_ALL=C sort
}

# Python writes bytecode caches next to the modules it imports. They are not part of the
# release, and a planted .pyc whose header matches its source would run instead of it, so
# caches the manifest does not list are removed (as the app user: the tree is theirs) before
# the release is compared; the interpreter rebuilds them.
drop_bytecode_caches() {
  local release=$1 manifest=$2 p
  while IFS= read -r -d '' p; do
    manifest_escape "$p"
    manifest_has "$manifest" d "$ESCAPED" || quiet as_app_user rm -rf -- "$release/$p"
  done < <(find -P "$release" -mindepth 1 -type d -name __pycache__ -prune -printf '%P\0' 9>&-)
}

# not_for_image MESSAGE REASON: nothing to bake from here; nothing was changed.
not_for_image() {
  warn "refused: $1"
  finish failed 1 "refused to prepare an image: $1; nothing was changed" "$2"
}

# What makes this instance itself, cleared so that instances booted from its image do not share
# it. Paths are under ZCP_IMAGE_ROOT (default /), which only tests set; every one is root's
# (or, for the app user's histories, removed as the app user), and no link is followed.
clear_instance_identity() {
  local root=${ZCP_IMAGE_ROOT:-/} f keys=0 logs=0 histories=0 home
  root=${root%/}
  CLEARED=()
  # machine-id(5): an empty /etc/machine-id makes systemd generate a new ID at the next boot.
  f=$root/etc/machine-id
  if [[ -f $f && ! -L $f ]]; then
    : >"$f"
    CLEARED+=(machine-id)
  fi
  f=$root/var/lib/dbus/machine-id
  if [[ -f $f && ! -L $f ]]; then
    rm -f -- "$f"
    CLEARED+=("dbus machine-id")
  fi
  # cloud-init (and sshd-keygen on other distributions) create new host keys at first boot.
  for f in "$root"/etc/ssh/ssh_host_*; do
    [[ -f $f || -L $f ]] || continue
    rm -f -- "$f"
    keys=$((keys + 1))
  done
  ((keys == 0)) || CLEARED+=("$keys SSH host key file(s)")
  # zcp's deploy logs name this instance and what ran on it; the checksums, activation times
  # and manifests stay: an instance from the image reuses its release.
  for f in "$STATE_DIR/deploy.log" "$STATE_DIR/deploy-detail.log" "$STATE_DIR/deploy-detail.log.1"; do
    [[ -f $f || -L $f ]] || continue
    rm -f -- "$f"
    logs=$((logs + 1))
  done
  ((logs == 0)) || CLEARED+=("$logs zcp deploy log(s)")
  for f in .bash_history .zsh_history .python_history .lesshst .viminfo; do
    [[ -f $root/root/$f || -L $root/root/$f ]] || continue
    rm -f -- "$root/root/$f"
    histories=$((histories + 1))
  done
  home=$(getent passwd "$APP_USER" | cut -d: -f6) || home=""
  if [[ $home == /* && -d $root$home && ! -L $root$home ]]; then
    for f in .bash_history .zsh_history .python_history .lesshst .viminfo; do
      [[ -f $root$home/$f || -L $root$home/$f ]] || continue
      quiet as_app_user rm -f -- "$root$home/$f" && histories=$((histories + 1))
    done
  fi
  ((histories == 0)) || CLEARED+=("$histories shell history file(s)")
  ((${#CLEARED[@]} > 0)) || CLEARED=(nothing)
}
CLEARED=()

# ZCP_ACTION=prepare-image: the runner sends it to the instance an image is about to be taken
# from. The current release must be the one asked for, verified against the checksum asked for,
# and identical to the manifest recorded when it was deployed; otherwise the image is refused
# (exit 1, reason "tampered", the first differing paths named) and nothing is cleared.
prepare_image() {
  local release=$APP_DIR/releases/$ZCP_VERSION manifest=$STATE_DIR/releases/$ZCP_VERSION.manifest current sha
  STEP="checking release $ZCP_VERSION before an image is taken"
  PREVIOUS=""
  [[ ! -e $PENDING_FILE && ! -L $PENDING_FILE ]] || not_for_image "a deploy on this instance was interrupted before it was verified" unsettled
  current=$(current_version)
  [[ $current == "$ZCP_VERSION" ]] || not_for_image "the current release is ${current:-none}, not $ZCP_VERSION" not_current
  sha=$(stored_sha "$ZCP_VERSION") || sha=""
  [[ $sha == "$ZCP_SHA256" ]] ||
    not_for_image "release $ZCP_VERSION here was not verified against sha256 $ZCP_SHA256" not_verified
  [[ -f $manifest && ! -L $manifest ]] ||
    not_for_image "no manifest was recorded for release $ZCP_VERSION (it was extracted by an older agent; deploy it again)" no_manifest
  APP_HOME=$(getent passwd "$APP_USER" | cut -d: -f6) || true
  [[ -n $APP_HOME && -d $APP_HOME ]] || APP_HOME=$APP_DIR/shared
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/zcp-agent.XXXXXXXX")
  check_app_path "$APP_DIR/releases"
  local differences="" count=0
  if [[ ! -d $release || -L $release ]]; then
    differences="releases/$ZCP_VERSION: is not a directory"
  else
    drop_bytecode_caches "$release" "$manifest"
    if ! manifest_of "$release" >"$WORK/actual.manifest"; then
      differences="releases/$ZCP_VERSION: changed while it was being read"
    else
      differences=$(manifest_differences "$manifest" "$WORK/actual.manifest")
    fi
  fi
  if [[ -n $differences ]]; then
    count=$(printf '%s\n' "$differences" | wc -l)
    warn "release $ZCP_VERSION differs from its manifest in $count place(s):"
    printf '%s\n' "$differences" | head -n 20 | sed 's/^/  /' >&2
    local first
    first=$(printf '%s\n' "$differences" | head -n 3 | paste -sd ';' - | sed 's/;/; /g')
    finish failed 1 "refused to prepare an image: release $ZCP_VERSION differs from the manifest recorded when it was deployed, $count difference(s): $first" tampered
  fi
  clear_instance_identity
  local joined
  joined=$(printf '%s, ' "${CLEARED[@]}")
  say "release $ZCP_VERSION matches its manifest; cleared ${joined%, }"
  finish prepared 0 "release $ZCP_VERSION matches its manifest; cleared for the image: ${joined%, }"
}

# --- the deploy ----------------------------------------------------------------------------

main() {
  validate_inputs
  take_lock
  INSPECTED=1
  # Nothing in the app dir is read before its layout is known to be safe.
  check_app_layout
  STATE_DIR=${ZCP_STATE_DIR:-$(state_dir_default)}
  check_state_dir "$STATE_DIR"
  PENDING_FILE=$STATE_DIR/pending
  [[ $ACTION != prepare-image ]] || prepare_image
  revert_unverified_switch

  PREVIOUS=$(current_version)
  if [[ -n $PREVIOUS ]] && ! [[ $PREVIOUS =~ $VERSION_RE && -d $APP_DIR/releases/$PREVIOUS ]]; then
    warn "current points to a missing release; treating this as a first deploy"
    PREVIOUS=""
  fi
  local release=$APP_DIR/releases/$ZCP_VERSION have_sha
  have_sha=$(stored_sha "$ZCP_VERSION") || have_sha=""

  WORK=$(mktemp -d "${TMPDIR:-/tmp}/zcp-agent.XXXXXXXX")
  DETAIL=$WORK/detail.log
  : >"$DETAIL"

  if [[ -n $have_sha && $PREVIOUS == "$ZCP_VERSION" ]]; then
    # Versions are immutable: the same version with other bytes is a mistake upstream.
    [[ $have_sha == "$ZCP_SHA256" ]] ||
      reject "version $ZCP_VERSION is current with a different sha256" checksum
    make_app_dirs
    if [[ -L $release/.venv || -L $release/node_modules ]]; then DEPS=reused; fi
    if healthy_now; then
      say "$ZCP_APP $ZCP_VERSION is already current and healthy"
      finish unchanged 0 "$ZCP_VERSION is already current and healthy"
    fi
    say "$ZCP_APP $ZCP_VERSION is current but not healthy; restarting it"
    service_restart || true
    wait_healthy || finish failed 1 "$ZCP_VERSION is current and did not become healthy after a restart: $HEALTH_PROBLEM"
    finish deployed 0 "restarted $ZCP_VERSION, which was current but not healthy"
  fi

  say "deploying $ZCP_APP $ZCP_VERSION (previous: ${PREVIOUS:-none}) to $(instance_name)"
  local reuse=0
  # A verified release is reused; one an older agent extracted has no manifest yet, so its
  # artifact is fetched again when it can be (a rollback whose artifact has left the bucket
  # still reuses it, and no image is taken from it until it is deployed again).
  if [[ $have_sha == "$ZCP_SHA256" ]] && { [[ -f $STATE_DIR/releases/$ZCP_VERSION.manifest ]] || ! fetch_artifact; }; then
    reuse=1
    say "release $ZCP_VERSION is already on this instance and verified; reusing it"
  else
    STEP="fetching $ZCP_ARTIFACT"
    [[ -n ${ARTIFACT_FILE:-} ]] || fetch_artifact
    local got
    got=$(sha256sum "$ARTIFACT_FILE" | cut -d' ' -f1)
    [[ $got == "$ZCP_SHA256" ]] ||
      reject "artifact sha256 is $got, expected $ZCP_SHA256" checksum
    say "artifact verified (sha256 ${got:0:12})"
    check_artifact_entries
    STEP="recording the release manifest"
    manifest_from_artifact
  fi
  ((!reuse)) || check_lockfiles "$release"

  # From here on the app dir changes. A failing step ends the deploy through on_exit, which
  # reports it; until the switch, the current release keeps running untouched.
  STEP="preparing $APP_DIR"
  make_app_dirs
  if ((!reuse)); then
    STEP="extracting the artifact"
    extract_release
    say "release extracted into releases/$ZCP_VERSION"
  fi
  STEP="installing dependencies"
  install_dependencies
  say "dependencies: $DEPS"
  STEP="recording the release manifest"
  record_manifest
  STEP="switching to $ZCP_VERSION"
  mark_pending "$PREVIOUS"
  SWITCHED=1
  switch_current "$ZCP_VERSION"
  say "current -> releases/$ZCP_VERSION; restarting $ZCP_SERVICE"
  STEP="starting $ZCP_VERSION"
  local problem=""
  if ! service_restart; then
    problem="$ZCP_PROCESS_MANAGER could not start $ZCP_SERVICE"
  elif ! wait_healthy; then
    problem=$HEALTH_PROBLEM
  fi

  if [[ -z $problem ]]; then
    SWITCHED=0
    clear_pending
    say "$ZCP_VERSION is healthy"
    prune || warn "could not remove old releases"
    finish deployed 0 "$ZCP_VERSION is current and healthy"
  fi

  warn "$ZCP_VERSION failed: $problem"
  if [[ -n $PREVIOUS ]]; then
    STEP="rolling back to $PREVIOUS"
    switch_current "$PREVIOUS"
    SWITCHED=0
    clear_pending
    say "rolled back current -> releases/$PREVIOUS; restarting $ZCP_SERVICE"
    service_restart || true
    if wait_healthy; then
      prune || warn "could not remove old releases"
      finish rolled_back 1 "$ZCP_VERSION failed ($problem); rolled back to $PREVIOUS, which is healthy"
    fi
    finish failed 1 "$ZCP_VERSION failed ($problem); rolled back to $PREVIOUS, which is not healthy either: $HEALTH_PROBLEM"
  fi
  # First deploy: there is nothing to go back to, so nothing broken is left running or
  # pointed at (a reboot would start it again).
  STEP="stopping $ZCP_SERVICE"
  service_stop
  rm -f -- "$APP_DIR/current"
  SWITCHED=0
  clear_pending
  finish failed 1 "$ZCP_VERSION failed ($problem); no previous release, $ZCP_SERVICE stopped"
}

trap 'FAILED_AT="line $LINENO: ${BASH_COMMAND:0:120}"' ERR
trap on_exit EXIT
trap 'INTERRUPTED=TERM; exit 143' TERM
trap 'INTERRUPTED=INT; exit 130' INT
trap 'INTERRUPTED=HUP; exit 129' HUP
main
