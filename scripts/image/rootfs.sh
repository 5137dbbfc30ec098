#!/usr/bin/env bash
# Assembles the container image's root filesystem: the `autoscaler` release binary and
# the run-time files of a few Debian packages (scripts/image/packages), the way distroless
# images are made: glibc and libgcc_s, a CA bundle, /etc/passwd and /etc/group with
# root and a nonroot user (65532), /etc/nsswitch.conf, /etc/os-release, the packages'
# copyright files and their dpkg records (var/lib/dpkg/status.d/, for vulnerability
# scanners), an empty /tmp. No shell, no package manager, nothing else.
#
# The one recipe of the image: charts/Dockerfile runs it in its build stage, CI runs it
# through scripts/image/build.sh, so both produce the same file set. Every file is owned
# by root in the image (the tar and Docker's COPY both make it so), modes are set here.
#
# Usage: scripts/image/rootfs.sh BINARY OUTDIR
#   BINARY  the release binary (cargo build --release -p autoscaler-bin --bin autoscaler --locked)
#   OUTDIR  a directory that does not exist yet or is empty
# Needs: apt-get (with package lists: run `apt-get update` once), dpkg-deb, binutils
# (readelf, objdump, objcopy). The packages come from the machine's apt sources, so run
# it on the Debian release the binary was built on (its glibc is what the binary needs).
set -euo pipefail
umask 022
export LC_ALL=C

die() { echo "scripts/image/rootfs.sh: $*" >&2; exit 1; }
[[ $# == 2 ]] || die "usage: rootfs.sh BINARY OUTDIR (e.g. rootfs.sh target/release/autoscaler /tmp/rootfs)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$1" out="$2"
build_hint="build it with: cargo build --release -p autoscaler-bin --bin autoscaler --locked"
[[ -f "$bin" && -x "$bin" ]] || die "$bin is not an executable file; $build_hint"
for tool in apt-get dpkg dpkg-deb readelf objdump objcopy; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg binutils; apt-get comes with Debian)"
done
if [[ -e "$out" && -n "$(ls -A "$out")" ]]; then die "$out exists and is not empty: give a new directory"; fi

# --- the binary fits the packages: same machine, glibc no newer than the one we ship
arch="$(dpkg --print-architecture)"
machine="$(readelf -h "$bin" 2>/dev/null | sed -n 's/^ *Machine: *//p')" || true
case "$arch:$machine" in
  amd64:*X86-64*|arm64:*AArch64*) ;;
  *) die "$bin is built for '${machine:-not an ELF file}' but the packages would be for Debian's $arch: build on the image's architecture" ;;
esac

mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/packages" | grep -v '^$')
work="$(mktemp -d "${TMPDIR:-/tmp}/rootfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/x" "$out"

# --- download (not install) the packages; their doc dirs may be symlinks to another
# package's (libgcc-s1 -> gcc-12-base), whose copyright file is fetched too
download() {
  (cd "$work/debs" && apt-get -q -o APT::Sandbox::User=root download "$@" >/dev/null) ||
    die "apt-get download $* failed: run 'apt-get update' first, or fix the name in scripts/image/packages"
}
download "${pkgs[@]}"
deb_of() { local f=("$work/debs/$1"_*.deb); [[ -f "${f[0]}" ]] || die "no .deb for $1 after apt-get download"; echo "${f[0]}"; }
for p in "${pkgs[@]}"; do dpkg-deb -x "$(deb_of "$p")" "$work/x/$p"; done
doc_pkgs=()
for p in "${pkgs[@]}"; do
  if [[ -L "$work/x/$p/usr/share/doc/$p" ]]; then
    target="$(readlink "$work/x/$p/usr/share/doc/$p")"
    [[ "$target" =~ ^[a-z0-9][a-z0-9.+-]*$ ]] || die "usr/share/doc/$p of $p points to '$target', not to a package's doc dir"
    doc_pkgs+=("$target")
  fi
done
if ((${#doc_pkgs[@]})); then
  download "${doc_pkgs[@]}"
  for p in "${doc_pkgs[@]}"; do dpkg-deb -x "$(deb_of "$p")" "$work/x/$p"; done
fi

# --- what each package contributes
copy_tree() { # PKG DIR: DIR of the package, as is (symlinks kept)
  [[ -e "$work/x/$1/$2" ]] || return 0
  mkdir -p "$out/$(dirname "$2")"
  cp -a "$work/x/$1/$2" "$out/$(dirname "$2")/"
}
for p in "${pkgs[@]}"; do
  x="$work/x/$p"
  case "$p" in
    libc6 | libgcc-s1)
      # shared libraries and the dynamic loader; not gconv (iconv modules, 8 MB: no
      # program in the image calls iconv) nor ld.so.conf (no ldconfig)
      for d in lib lib64 usr/lib; do copy_tree "$p" "$d"; done
      rm -rf "$out"/usr/lib/*/gconv
      ;;
    ca-certificates)
      # the bundle update-ca-certificates would write: every Mozilla root, in name order
      mapfile -t crts < <(cd "$x/usr/share/ca-certificates" && find . -name '*.crt' | sort)
      ((${#crts[@]} > 50)) || die "ca-certificates has only ${#crts[@]} certificates in usr/share/ca-certificates"
      install -d -m 0755 "$out/etc/ssl/certs"
      for c in "${crts[@]}"; do
        cat "$x/usr/share/ca-certificates/$c"
        [[ -z "$(tail -c 1 "$x/usr/share/ca-certificates/$c")" ]] || echo
      done >"$out/etc/ssl/certs/ca-certificates.crt"
      chmod 0644 "$out/etc/ssl/certs/ca-certificates.crt"
      ;;
    base-files)
      [[ -f "$x/usr/lib/os-release" ]] || die "base-files has no usr/lib/os-release"
      install -D -m 0644 "$x/usr/lib/os-release" "$out/etc/os-release"
      ;;
    *) die "scripts/image/packages names $p, but rootfs.sh has no rule for it: add one saying which of its files the image needs" ;;
  esac
  # the licence, and the dpkg record scanners read (distroless keeps them in status.d)
  doc="$p"
  [[ -L "$x/usr/share/doc/$p" ]] && doc="$(readlink "$x/usr/share/doc/$p")"
  copyright="$work/x/$doc/usr/share/doc/$doc/copyright"
  [[ -f "$copyright" ]] || die "no copyright file for $p (looked at usr/share/doc/$doc/copyright)"
  install -D -m 0644 "$copyright" "$out/usr/share/doc/$doc/copyright"
  install -d -m 0755 "$out/var/lib/dpkg/status.d"
  dpkg-deb -f "$(deb_of "$p")" >"$out/var/lib/dpkg/status.d/$p"
  chmod 0644 "$out/var/lib/dpkg/status.d/$p"
done

find "$out" -mindepth 1 -depth -type d -empty -delete # e.g. usr/lib/<triplet> without gconv

# --- users, name service, directories
install -d -m 0755 "$out/etc" "$out/home/nonroot"
install -d -m 0700 "$out/root"
install -d -m 1777 "$out/tmp"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$out/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$out/etc/nsswitch.conf"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"

# --- the binary, without its debug info (line tables: ~60% of its size; backtraces
# keep function names from the symbol table)
objcopy --strip-debug "$bin" "$out/autoscaler"
chmod 0755 "$out/autoscaler"

# --- check: every library the binary needs, and theirs, and the loader are in the image
resolve() { # absolute path inside the image -> path on this machine, symlinks followed inside $out
  local p="$1" n=0 t
  while [[ -L "$out$p" ]]; do
    t="$(readlink "$out$p")"
    [[ "$t" == /* ]] || t="$(dirname "$p")/$t"
    p="$t"
    ((++n < 20)) || return 1
  done
  [[ -f "$out$p" ]] && echo "$out$p"
}
interp="$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')"
[[ -z "$interp" ]] || resolve "$interp" >/dev/null ||
  die "the binary's loader $interp is not in the image: add the package that ships it to scripts/image/packages"
libdirs=()
for d in "$out"/lib/*-linux-gnu "$out"/usr/lib/*-linux-gnu; do [[ -d "$d" ]] && libdirs+=("${d#"$out"}"); done
declare -A seen=()
queue=("$out/autoscaler")
while ((${#queue[@]})); do
  f="${queue[0]}" queue=("${queue[@]:1}")
  while read -r lib; do
    [[ -n "$lib" && -z "${seen[$lib]:-}" ]] || continue
    seen[$lib]=1
    found=
    for d in "${libdirs[@]}"; do
      if found="$(resolve "$d/$lib")"; then break; fi
      found=
    done
    [[ -n "$found" ]] || die "$(basename "$f") needs $lib, which no package of scripts/image/packages puts in the image: add the package that ships it (dpkg -S $lib)"
    queue+=("$found")
  done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
glibc_needed="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
glibc_shipped="$(dpkg-deb -f "$(deb_of libc6)" Version | sed 's/-.*//')"
if [[ -n "$glibc_needed" ]] && [[ "$(printf '%s\n' "$glibc_needed" "$glibc_shipped" | sort -V | tail -n 1)" != "$glibc_shipped" ]]; then
  die "the binary needs glibc $glibc_needed but libc6 from apt is $glibc_shipped: build the binary on the Debian release whose packages go into the image"
fi

for p in "${pkgs[@]}"; do
  printf 'package %-16s %s\n' "$p" "$(dpkg-deb -f "$(deb_of "$p")" Version)"
done
echo "rootfs $out: $(find "$out" | wc -l) entries, $(du -sk "$out" | cut -f1) KiB (binary needs $(printf "%s\n" "${!seen[@]}" | sort | tr "\n" " "); glibc >= ${glibc_needed:-none})"
