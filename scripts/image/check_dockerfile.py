#!/usr/bin/env python3
"""Checks that charts/Dockerfile builds what CI builds (scripts/image/test.sh runs this).

usage: check_dockerfile.py DOCKERFILE
Prints one `ok - ...` / `not ok - ...` line per assertion; exit 1 if any failed.

- ARG RUST_VERSION is at least the highest rust-version of the workspace's packages
  (`cargo metadata`), so the build stage can compile the workspace;
- ARG DEBIAN_RELEASE is the Debian release of this machine: rootfs.sh takes its packages
  from the apt sources of wherever it runs, and CI runs it here;
- the build stage builds the binary as CI does and runs scripts/image/rootfs.sh on it;
  the final stage is `FROM scratch` plus that root filesystem;
- ENTRYPOINT, USER and EXPOSE are scripts/image/config's (what build.sh gives crane).
"""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
results = []


def check(desc, cond, detail=""):
    results.append((bool(cond), desc, detail))


def version(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3]) + (0,) * (3 - len(re.findall(r"\d+", v)[:3]))


def instructions(path):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in open(path):
        s = line.rstrip("\n")
        if not cur and (not s.strip() or s.lstrip().startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        cur = ""
    return out


path = sys.argv[1]
ins = instructions(path)
args = dict(a.split("=", 1) for i, a in ins if i == "ARG" and "=" in a)
config = dict(l.split("=", 1) for l in open(os.path.join(HERE, "config")).read().splitlines()
              if l and not l.startswith("#"))

# ---- Rust: at least every package's rust-version
meta = json.loads(subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT,
                                 check=True, capture_output=True, text=True).stdout)
needed = max((p["rust_version"] for p in meta["packages"] if p.get("rust_version")), key=version)
rust = args.get("RUST_VERSION", "")
check(f"{path}: ARG RUST_VERSION ({rust or 'missing'}) >= the workspace's rust-version ({needed})",
      rust and version(rust) >= version(needed),
      f"set ARG RUST_VERSION={needed} or newer in {path}")

# ---- Debian release: the one CI assembles the image on
codename = dict(l.split("=", 1) for l in open("/etc/os-release").read().splitlines() if "=" in l).get(
    "VERSION_CODENAME", "").strip('"')
check(f"{path}: ARG DEBIAN_RELEASE ({args.get('DEBIAN_RELEASE', 'missing')}) is this machine's ({codename})",
      args.get("DEBIAN_RELEASE") == codename,
      f"CI takes the packages from {codename}; the Dockerfile must build on the same release")

# ---- stages
froms = [a for i, a in ins if i == "FROM"]
check(f"{path}: build stage FROM rust:${{RUST_VERSION}}-slim-${{DEBIAN_RELEASE}} AS build",
      froms[:1] == ["rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build"], froms)
check(f"{path}: final stage FROM scratch", froms[-1:] == ["scratch"], froms)
runs = " ".join(a for i, a in ins if i == "RUN")
check(f"{path}: builds the binary as CI does (cargo build --release -p autoscaler-bin --bin autoscaler --locked)",
      "cargo build --release -p autoscaler-bin --bin autoscaler --locked" in runs, runs)
check(f"{path}: runs scripts/image/rootfs.sh on the binary into /rootfs",
      "scripts/image/rootfs.sh target/release/autoscaler /rootfs" in runs, runs)
final = ins[max(n for n, (i, _) in enumerate(ins) if i == "FROM"):]
copies = [a for i, a in final if i == "COPY"]
check(f"{path}: the final stage is the root filesystem alone (COPY --from=build /rootfs/ /)",
      copies == ["--from=build /rootfs/ /"] and not [i for i, _ in final if i in ("RUN", "ADD")], copies)

# ---- run-time config = scripts/image/config
last = {i: a for i, a in final}
check(f"{path}: ENTRYPOINT [\"{config['IMAGE_ENTRYPOINT']}\"] as in scripts/image/config",
      last.get("ENTRYPOINT") == json.dumps([config["IMAGE_ENTRYPOINT"]]), last.get("ENTRYPOINT"))
check(f"{path}: USER {config['IMAGE_USER']} as in scripts/image/config",
      last.get("USER") == config["IMAGE_USER"], last.get("USER"))
check(f"{path}: EXPOSE {config['IMAGE_PORT']} as in scripts/image/config",
      last.get("EXPOSE") == config["IMAGE_PORT"], last.get("EXPOSE"))

for ok, desc, detail in results:
    print(("ok - " if ok else "not ok - ") + desc)
    if not ok and detail:
        print(f"    {detail}")
sys.exit(0 if all(ok for ok, _, _ in results) else 1)
