#!/usr/bin/env bash
# Tests the Debian package (issue 18, Packaging): builds it from the release
# binary scripts/test already built (no cargo build here), checks its contents
# and metadata, verifies the systemd unit, then runs the packaged binary with
# the packaged configuration from an extracted copy (systemd itself does not
# run in CI) and checks that it answers /healthz and /readyz, that
# `convene check-config` accepts the shipped file, and that SIGTERM stops it
# cleanly. Also checks deploy/ (promtool where installed, else YAML/JSON
# structure).
#   tests/package/test.sh [BINARY]      (default target/release/convene)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-target/release/convene}"
fail() { echo "FAIL (package): $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin" ] || fail "no release binary at $bin (cargo build --release -p convene-server)"
# gzip rather than xz: the same package, built in a second rather than 20.
deb="$(CONVENE_DEB_COMPRESS=-Zgzip scripts/package-deb "$bin" "$work/out" | tail -1)"
[ -f "$deb" ] || fail "scripts/package-deb made no .deb (said: $deb)"
ok "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# --- contents (dpkg-deb -c)
dpkg-deb -c "$deb" >"$work/contents" || fail "dpkg-deb -c cannot read $deb"
expect_file() { # path, mode (ls -l style)
  local line
  line="$(awk -v p="./$1" '$6 == p' "$work/contents")"
  [ -n "$line" ] || fail "the package lacks /$1"
  [ -z "${2:-}" ] || [ "$(echo "$line" | cut -d' ' -f1)" = "$2" ] ||
    fail "/$1 has mode $(echo "$line" | cut -d' ' -f1), expected $2"
  [ "$(echo "$line" | awk '{print $2}')" = root/root ] || fail "/$1 is not owned by root/root in the archive"
}
expect_file usr/bin/convene -rwxr-xr-x
expect_file lib/systemd/system/convene.service -rw-r--r--
expect_file etc/convene/convene.toml -rw-r-----
expect_file etc/convene/policy.toml -rw-r-----
expect_file usr/share/doc/convene/copyright -rw-r--r--
expect_file usr/share/doc/convene/third-party-licenses.html -rw-r--r--
expect_file usr/share/doc/convene/README.md
expect_file usr/share/doc/convene/configuration.md
expect_file usr/share/doc/convene/examples/port-443.conf
expect_file usr/share/man/man1/convene.1.gz
if grep -vE '^d' "$work/contents" | awk '{print $6}' |
  grep -vE '^\./(usr/bin/convene|lib/systemd/system/convene\.service|etc/convene/|usr/share/(doc|man)/)' >"$work/stray"; then
  fail "files outside the expected places: $(tr '\n' ' ' <"$work/stray")"
fi
ok "contents: binary, unit, conffiles, docs, notices, man page; nothing else"

# --- metadata (dpkg-deb -I)
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = convene ] || fail "Package is '$(field Package)', expected convene"
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
case "$(field Version)" in "$version" | "$version"-*) ;; *) fail "Version $(field Version) is not the workspace's $version" ;; esac
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture is $(field Architecture)"
field Depends | grep -q adduser || fail "Depends lacks adduser (postinst creates the convene user): $(field Depends)"
field Depends | grep -q 'libc6 (>= ' || fail "Depends lacks libc6 with a version: $(field Depends)"
dpkg-deb -I "$deb" conffiles >"$work/conffiles" || fail "no conffiles in the package"
diff <(sort "$work/conffiles") <(printf '/etc/convene/convene.toml\n/etc/convene/policy.toml\n') >/dev/null ||
  fail "conffiles are '$(tr '\n' ' ' <"$work/conffiles")', expected /etc/convene/convene.toml and /etc/convene/policy.toml"
for s in postinst prerm postrm; do
  dpkg-deb -I "$deb" "$s" >"$work/$s" || fail "no $s in the package"
  sh -n "$work/$s" || fail "$s is not valid sh"
done
grep -q 'adduser --system' "$work/postinst" || fail "postinst does not create the convene system user"
ok "metadata: $(field Package) $(field Version) $(field Architecture), Depends: $(field Depends); conffiles; maintainer scripts parse"

# --- extract, and verify the unit against the extracted tree
root="$work/root"
dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x failed"
unit="$root/lib/systemd/system/convene.service"
for want in 'User=convene' 'StateDirectory=convene' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
  'ProtectHome=yes' 'PrivateTmp=yes' 'SystemCallFilter=@system-service' \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK' \
  'ExecStart=/usr/bin/convene --config /etc/convene/convene.toml' \
  'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure' 'CapabilityBoundingSet=' 'AmbientCapabilities='; do
  grep -qxF "$want" "$unit" || fail "the unit lacks the line '$want'"
done
grep -v '^#' "$unit" | grep -q 'CAP_NET_BIND_SERVICE' && fail "the unit grants CAP_NET_BIND_SERVICE by default (only the port-443 drop-in may)"
grep -qxF 'AmbientCapabilities=CAP_NET_BIND_SERVICE' "$root/usr/share/doc/convene/examples/port-443.conf" ||
  fail "the port-443 drop-in example does not grant CAP_NET_BIND_SERVICE"
if command -v systemd-analyze >/dev/null; then
  # The unit names /usr/bin/convene, which is not installed on this machine:
  # verify a copy whose ExecStart names the extracted binary instead (the one
  # change), with man finding the extracted man page (Documentation=).
  verify_dir="$work/verify-units"
  mkdir -p "$verify_dir"
  sed "s#^ExecStart=/usr/bin/convene #ExecStart=$root/usr/bin/convene #" "$unit" >"$verify_dir/convene.service"
  grep -q "^ExecStart=$root/usr/bin/convene " "$verify_dir/convene.service" || fail "cannot point ExecStart at the extracted binary"
  if ! MANPATH="$root/usr/share/man" systemd-analyze verify "$verify_dir/convene.service" >"$work/verify" 2>&1 || [ -s "$work/verify" ]; then
    cat "$work/verify" >&2
    fail "systemd-analyze verify complains about convene.service (above)"
  fi
  # And with the port-443 drop-in in place.
  mkdir -p "$verify_dir/convene.service.d"
  cp "$root/usr/share/doc/convene/examples/port-443.conf" "$verify_dir/convene.service.d/"
  if ! MANPATH="$root/usr/share/man" systemd-analyze verify "$verify_dir/convene.service" >"$work/verify" 2>&1 || [ -s "$work/verify" ]; then
    cat "$work/verify" >&2
    fail "systemd-analyze verify complains about convene.service with the port-443 drop-in (above)"
  fi
  ok "systemd-analyze verify: convene.service and the port-443 drop-in's unit are clean"
  exposure="$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | tail -1 || true)"
  [ -n "$exposure" ] && ok "systemd-analyze security: ${exposure#→ }"
else
  echo "  skipped: systemd-analyze not installed (apt-get install systemd)"
fi

# --- the packaged configuration
conf="$root/etc/convene/convene.toml"
grep -qx '\[server\]' "$conf" || fail "the shipped convene.toml has no [server] table"
# Every flag of `convene --help` is documented in its [server] table as a key
# (set or commented out); --config itself is the file.
"$root/usr/bin/convene" --help | grep -oE '^ +--[a-z-]+' | sed 's/^ *--//' | grep -vx -e config -e help -e version |
  tr - _ | sort -u >"$work/flags"
missing=""
while read -r key; do
  [ "$key" = trusted_proxies ] && key=trusted_proxy
  grep -qE "^#? ?${key} = " "$conf" || missing="$missing $key"
done <"$work/flags"
[ -z "$missing" ] || fail "the shipped convene.toml does not document these [server] keys:$missing"
ok "convene.toml documents every flag as a [server] key ($(wc -l <"$work/flags") flags)"
grep -qx 'data_dir = "/var/lib/convene"' "$conf" || fail "the shipped convene.toml does not set data_dir = \"/var/lib/convene\""
cmp -s "$root/etc/convene/policy.toml" policies/uk.toml || fail "/etc/convene/policy.toml is not policies/uk.toml"
if "$root/usr/bin/convene" --help | grep -q 'check-config'; then
  if ! "$root/usr/bin/convene" check-config "$conf" >"$work/check" 2>&1; then
    cat "$work/check" >&2
    fail "convene check-config rejects the shipped /etc/convene/convene.toml (above)"
  fi
  ok "convene check-config accepts the shipped convene.toml and policy: $(head -1 "$work/check")"
else
  echo "  skipped: this binary has no check-config command yet"
fi
# The licence notices name every crate compiled into the binary (Cargo.lock
# as it is now: cargo tree reads it, compiling nothing).
notices="$root/usr/share/doc/convene/third-party-licenses.html"
cargo tree --offline --locked -p convene-server -e normal,build --prefix none \
  --target "$(rustc -vV | sed -n 's/^host: //p')" -f '{p}' 2>/dev/null | sed 's/ (.*//; s/ v/@/' | sort -u >"$work/crates" ||
  fail "cargo tree could not list convene's crates"
grep -o 'data-crate="[^"]*"' "$notices" | sed 's/data-crate="//; s/"$//' | sort -u >"$work/noticed"
unnoticed="$(comm -23 "$work/crates" "$work/noticed" | tr '\n' ' ')"
[ -z "$unnoticed" ] || fail "the third-party notices lack crates compiled into convene: $unnoticed- regenerate them with scripts/notices (cargo install --locked cargo-about --features cli) and commit packaging/third-party-licenses.html"
grep -q 'data-crate="str0m@' "$notices" || fail "the notices lack the vendored str0m"
ok "third-party notices cover all $(wc -l <"$work/crates") crates compiled in"
# The man page is --help; every flag there has its row in configuration.md.
undocumented=""
for f in $("$root/usr/bin/convene" --help | grep -oE '^ +--[a-z-]+' | sed 's/^ *//' | grep -vx -e --help -e --version); do
  grep -q "^| \`$f\`" docs/configuration.md || undocumented="$undocumented $f"
done
[ -z "$undocumented" ] || fail "flags of convene --help (the man page) without a row in docs/configuration.md:$undocumented"
zcat "$root/usr/share/man/man1/convene.1.gz" | grep -q -- '--media-listen' || fail "the man page lacks the flags (--help)"
grep -q 'GNU AFFERO GENERAL PUBLIC LICENSE' "$root/usr/share/doc/convene/copyright" || fail "copyright lacks the AGPL text"

# --- run the packaged binary with the packaged config, overriding only where
# it listens and keeps data (temp and loopback).
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$work/data"
CONVENE_LISTEN="127.0.0.1:$port" CONVENE_DATA_DIR="$work/data" CONVENE_MEDIA_LISTEN=127.0.0.1:0 \
  CONVENE_MEDIA_WORKERS=1 \
  "$root/usr/bin/convene" --config "$conf" >"$work/server.log" 2>&1 &
server_pid=$!
healthy=""
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/healthz" >"$work/healthz" 2>/dev/null; then healthy=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$healthy" ]; then
  tail -30 "$work/server.log" >&2
  fail "the packaged binary with the packaged config did not answer /healthz on 127.0.0.1:$port within 10 s (log above)"
fi
ok "packaged binary + packaged config answers /healthz: $(cat "$work/healthz")"
if "$root/usr/bin/convene" --help | grep -q -- '--metrics-listen'; then
  curl -fsS "http://127.0.0.1:$port/readyz" >"$work/readyz" || fail "/readyz did not answer 200: $(cat "$work/readyz")"
  ok "/readyz: $(cat "$work/readyz")"
fi
[ -f "$work/data/convene.db" ] || fail "no database in the data folder given by CONVENE_DATA_DIR ($work/data)"
kill -TERM "$server_pid"
for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null && fail "the server did not stop within 15 s of SIGTERM"
rc=0; wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" = 0 ] || { tail -20 "$work/server.log" >&2; fail "the server exited $rc on SIGTERM (expected 0)"; }
ok "SIGTERM: stopped, exit 0"

# --- install and purge with dpkg (opt-in: it adds a user and files to this
# machine, so only where CONVENE_PACKAGE_INSTALL_TEST=1, e.g. a fresh CI
# machine, as root, with no convene package or user present).
if [ "${CONVENE_PACKAGE_INSTALL_TEST:-}" = 1 ]; then
  [ "$(id -u)" = 0 ] || fail "CONVENE_PACKAGE_INSTALL_TEST=1 needs root"
  dpkg -s convene >/dev/null 2>&1 && fail "a convene package is already installed here: not touching it"
  getent passwd convene >/dev/null && fail "a convene user already exists here: not touching it"
  dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i failed (above)"; }
  getent passwd convene >/dev/null || fail "postinst did not create the convene user"
  [ "$(stat -c '%U:%G %a' /etc/convene/convene.toml)" = "root:convene 640" ] ||
    fail "/etc/convene/convene.toml is $(stat -c '%U:%G %a' /etc/convene/convene.toml), expected root:convene 640"
  runuser -u convene -- /usr/bin/convene check-config /etc/convene/convene.toml >/dev/null ||
    fail "the convene user cannot check the installed /etc/convene/convene.toml"
  dpkg --purge convene >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge failed (above)"; }
  getent passwd convene >/dev/null && fail "purge left the convene user"
  [ -e /etc/convene/convene.toml ] && fail "purge left /etc/convene/convene.toml"
  ok "dpkg -i: user convene, config root:convene 0640 and readable by it; dpkg --purge: all gone"
fi

# --- deploy/: alert rules and dashboard
if command -v promtool >/dev/null; then
  promtool check rules deploy/prometheus-alerts.yml >"$work/promtool" 2>&1 || { cat "$work/promtool" >&2; fail "promtool check rules deploy/prometheus-alerts.yml"; }
  (cd deploy && promtool test rules prometheus-alerts.test.yml) >"$work/promtool" 2>&1 ||
    { cat "$work/promtool" >&2; fail "promtool test rules deploy/prometheus-alerts.test.yml"; }
  ok "promtool: alert rules check and their unit tests pass"
fi
python3 - <<'PY' || fail "deploy/ files are malformed (above)"
import json, re, sys
import yaml
rules = yaml.safe_load(open("deploy/prometheus-alerts.yml"))
names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
for need in ("ConveneDown", "ConveneMediaDrops", "ConveneAuditWriteFailures"):
    assert need in names, f"alert {need} missing from deploy/prometheus-alerts.yml"
for g in rules["groups"]:
    for r in g["rules"]:
        assert r.get("expr") and r.get("labels", {}).get("severity"), f"alert {r['alert']} lacks expr or severity"
d = json.load(open("deploy/grafana-dashboard.json"))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
assert d["title"] and d["uid"] and exprs, "dashboard lacks title, uid or queries"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "dashboard panel ids repeat"
# Every metric the documentation lists appears in the dashboard.
documented = set(re.findall(r"^\| `((?:convene|process)_[a-z_]+)`", open("docs/monitoring.md").read(), re.M))
used = set(re.findall(r"\b((?:convene|process)_[a-z_]+)", " ".join(exprs)))
missing = sorted(m for m in documented - used if m not in ("convene_media_datagrams_received_total", "convene_web_connections_accepted_total"))
assert not missing, f"dashboard does not show {missing}"
print(f"  ok: deploy/: {len(names)} alert rules, dashboard with {len(exprs)} queries covering the documented metrics")
PY
echo "package test passed"
