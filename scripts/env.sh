# Sourced (not run): puts zcp's tools first on PATH and sets what every engine run needs.
# Safe to source more than once.
ZCP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ZCP_ROOT
case ":$PATH:" in
  *":$ZCP_ROOT/.tools/bin:"*) ;;
  *) PATH="$ZCP_ROOT/.tools/bin:$ZCP_ROOT/.tools/venv/bin:$PATH" ;;
esac
if [ -x "$ZCP_ROOT/.tools/node/bin/node" ]; then
  case ":$PATH:" in
    *":$ZCP_ROOT/.tools/node/bin:"*) ;;
    *) PATH="$ZCP_ROOT/.tools/node/bin:$PATH" ;;
  esac
fi
export PATH
# The engine must never reach out: no update check, no plugin downloads.
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_HOME="$ZCP_ROOT/.tools/pulumi-home"
# File backends encrypt secrets with a passphrase. This one protects local, throwaway state
# only (tests, the demo); real environments use an S3 backend with a KMS secrets provider.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-zcp-local-only}"
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK="${PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK-false}"
