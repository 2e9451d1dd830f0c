# Sourced by the *-env.sh scripts: installs Debian packages (through sudo
# when not root) and turns off the services packages start on install, since
# the tests start their own instances on loopback ports.

apt_install() { # packages...
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || true
  $sudo apt-get install -y -qq "$@" >/dev/null
}

disable_services() { # units...
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
      sudo="sudo"
    fi
    $sudo systemctl disable --now "$@" >/dev/null 2>&1 || true
  fi
}
