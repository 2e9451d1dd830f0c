#!/usr/bin/env bash
# Builds the Debian package: target/debian/holdfast_<version>_<arch>.deb.
#
#   /usr/bin/holdfast, /usr/bin/holdfast-publish      the runner, the publisher
#   /usr/libexec/holdfast/holdfast-{connmgr,proxy,handler}   what the runner starts
#   /etc/holdfast/holdfast.conf, /etc/holdfast/routes the built-in defaults, commented
#   /lib/systemd/system/holdfast.service              runs as user holdfast
#   /usr/share/doc/holdfast/                          README, docs, copyright
#
# Uses only dpkg-deb (Debian's own tool); prints the package's path.
# HOLDFAST_PACKAGE_PROFILE names the cargo profile whose build to package
# (release unless set): the package test passes the one the test command
# built, so nothing is built again.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${HOLDFAST_PACKAGE_PROFILE:-release}
case "$profile" in
  dev) bin=target/debug ;;
  *) bin=target/$profile ;;
esac
# The whole workspace, as the README builds it: with --bins alone, cargo
# unifies features over fewer crates (ring's, for one), and rebuilds.
cargo build --profile "$profile" --locked --quiet
version=$(awk -F'"' '/^\[workspace.package\]/ {w=1} w && /^version/ {print $2; exit}' Cargo.toml)
arch=$(dpkg --print-architecture)
out=target/debian
stage=$out/holdfast_${version}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

install -D -m 755 -s "$bin/holdfast" "$stage/usr/bin/holdfast"
install -D -m 755 -s "$bin/holdfast-publish" "$stage/usr/bin/holdfast-publish"
for helper in connmgr proxy handler; do
  install -D -m 755 -s "$bin/holdfast-$helper" "$stage/usr/libexec/holdfast/holdfast-$helper"
done

# The config: the runner's built-in defaults (one source of truth), with the
# run folder systemd makes for the service.
mkdir -p "$stage/etc/holdfast"
{
  echo "# Holdfast configuration (Pushpin's pushpin.conf format; every key below"
  echo "# is Holdfast's default, and a Pushpin config loads as is)."
  echo "# After a change: systemctl restart holdfast (routes: systemctl reload holdfast)."
  sed -n '/^pub const DEFAULT_CONFIG: &str = r#"$/,/^"#;$/p' runner/src/config/defaults.rs \
    | sed '1d;$d' \
    | sed 's|^# rundir: .*|# folder for the ZeroMQ ipc sockets (the service'"'"'s RuntimeDirectory)\nrundir=/run/holdfast|'
} > "$stage/etc/holdfast/holdfast.conf"
grep -q '^rundir=/run/holdfast$' "$stage/etc/holdfast/holdfast.conf"
install -m 644 packaging/routes "$stage/etc/holdfast/routes"
install -D -m 644 packaging/holdfast.service "$stage/lib/systemd/system/holdfast.service"

doc=$stage/usr/share/doc/holdfast
install -D -m 644 README.md "$doc/README.md"
install -m 644 docs/*.md "$doc/"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: holdfast"
  echo
  echo "Files: *"
  echo "License: Apache-2.0"
  echo " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0."
} > "$doc/copyright"

installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: holdfast
Version: $version
Architecture: $arch
Maintainer: Holdfast developers <holdfast@localhost>
Installed-Size: $installed_kb
Depends: libc6, libgcc-s1, libstdc++6, adduser
Section: net
Priority: optional
Description: realtime reverse proxy, a drop-in replacement for Pushpin
 Holdfast holds long-lived client connections (long-polling, HTTP
 streaming, Server-Sent Events, WebSocket) in front of any web
 application and lets it push to them by publishing to channels, driven
 by GRIP instructions in its ordinary HTTP responses. It reads Pushpin's
 config and routes files and serves the same ports and publish APIs.
CONTROL
printf '/etc/holdfast/holdfast.conf\n/etc/holdfast/routes\n' > "$stage/DEBIAN/conffiles"
install -m 755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"

dpkg-deb --build --root-owner-group "$stage" "$out/holdfast_${version}_${arch}.deb" >/dev/null
rm -rf "$stage"
echo "$out/holdfast_${version}_${arch}.deb"
