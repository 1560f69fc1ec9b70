#!/usr/bin/env python3
"""Sandbox parity build: build and test cdcmon the way crane's derivations in nix/package.nix do,
with only the inputs each derivation declares, so a missing input fails here, in CI, instead of
on a Nix user's machine. docs/sandbox-parity.md explains what this models and what it cannot.

How:
  1. Evaluate nix/package.nix against stubs (inputs.nix, `nix-instantiate --eval --strict --json`):
     per derivation (deps = buildDepsOnly, package, clippy, fmt, nextest) its input lists and
     its string/bool/int attributes, plus the fileset crane gets as `src`.
  2. Map every Nix input to Debian packages (inputs.tsv). An unmapped input is an error.
  3. Build one minimal Debian root per distinct package set with mmdebstrap (essential variant
     + the mapped packages, /usr/bin/env removed: the Nix sandbox has none). Roots are cached
     under $SANDBOX_PARITY_CACHE keyed by their package list.
  4. Vendor the crates with `cargo vendor` OUTSIDE the sandbox (network allowed there, as for
     crane's vendorCargoDeps), then run each step in bubblewrap: no network but loopback, own
     PID/IPC/UTS namespaces, uid 1000, a cleared environment (HOME=/homeless-shelter, TMPDIR=/build,
     the derivation's attributes), the source as crane's fileset gives it, the rustup toolchain
     bind-mounted read-only (crane provides the toolchain implicitly), offline (`net.offline`
     in CARGO_HOME's config, the vendored source replacement) and `--locked`.
     Steps in crane order share one target dir, as `cargoArtifacts` does.
  5. Negative runs prove the guard bites: `curl` omitted from the inputs -> the rdkafka-sys build
     must fail on curl/curl.h; `prometheus.cli` omitted -> the promtool tests must fail.

Usage: scripts/sandbox-parity/run.py [--steps neg-curl,deps,package,nextest,neg-promtool]
       [--with-clippy] [--with-fmt] [--reuse-target] [--nextest-args ARGS].
       Must run as root (mmdebstrap --mode=root, bwrap uid maps).
Environment: SANDBOX_PARITY_WORK (default target/sandbox-parity), SANDBOX_PARITY_CACHE (default
/var/cache/cdcmon-sandbox-parity), SANDBOX_PARITY_MIRROR / SANDBOX_PARITY_SUITE (default: the
host apt's Debian mirror and release).
"""

import argparse
import concurrent.futures
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PACKAGE_NIX = os.path.join(REPO, "nix", "package.nix")
MAPPING = os.path.join(HERE, "inputs.tsv")
# Bump when the way roots are built changes, so cached roots are rebuilt.
ROOT_FORMAT = "2"

DEFAULT_STEPS = ["neg-curl", "deps", "package", "nextest", "neg-promtool"]


class ParityError(Exception):
    pass


def log(msg):
    print(f"sandbox-parity: {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# 1. What nix/package.nix declares


def evaluate(omit=()):
    omit_nix = "[ " + " ".join(json.dumps(o) for o in omit) + " ]"
    cmd = [
        "nix-instantiate", "--eval", "--strict", "--json",
        os.path.join(HERE, "inputs.nix"),
        "--arg", "file", PACKAGE_NIX,
        "--arg", "omit", omit_nix,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        stderr = "\n".join(
            line for line in proc.stderr.splitlines() if "build-users-group" not in line
        )
        raise ParityError(
            f"evaluating nix/package.nix with stubs failed (scripts/sandbox-parity/inputs.nix):\n"
            f"{stderr}"
        )
    result = json.loads(proc.stdout)
    for name, drv in result["derivations"].items():
        if drv["other"]:
            raise ParityError(
                f"derivation '{name}' sets attributes run.py does not model: {drv['other']} "
                "(teach scripts/sandbox-parity/inputs.nix and run.py about them)"
            )
    return result


def read_mapping():
    mapping = {}
    with open(MAPPING, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = [c for c in re.split(r"\t+", line)]
            if len(cols) < 2:
                raise ParityError(f"{MAPPING}:{lineno}: expected '<nix input><TAB><debian packages>'")
            mapping[cols[0].strip()] = {
                "packages": cols[1].split(),
                "remove": cols[2].split() if len(cols) > 2 else [],
            }
    if "stdenv" not in mapping:
        raise ParityError(f"{MAPPING}: no 'stdenv' row")
    return mapping


def root_spec(drv_name, drv, mapping):
    """The Debian packages and removed paths of a derivation's root: stdenv + its inputs."""
    inputs = ["stdenv"]
    for attr, items in sorted(drv["inputs"].items()):
        for item in items:
            if item.startswith("<"):
                raise ParityError(
                    f"derivation '{drv_name}' {attr} holds something that is not a formal of "
                    f"nix/package.nix: {item}"
                )
            inputs.append(item)
    packages = set()
    for item in inputs:
        if item not in mapping:
            raise ParityError(
                f"nix/package.nix input '{item}' (derivation '{drv_name}') has no row in "
                f"scripts/sandbox-parity/inputs.tsv: add the Debian package(s) that provide it"
            )
        packages.update(mapping[item]["packages"])
    # A path is removed only if no other declared input that maps to the same Debian package
    # keeps it (`prometheus.cli` drops the server binary, `prometheus` keeps it).
    remove = set()
    for path in {p for i in inputs for p in mapping[i]["remove"]}:
        owners = {i for i in inputs if path in mapping[i]["remove"]}
        owner_pkgs = {p for i in owners for p in mapping[i]["packages"]}
        if not any(set(mapping[i]["packages"]) & owner_pkgs for i in inputs if i not in owners):
            remove.add(path)
    return {"inputs": sorted(set(inputs)), "packages": sorted(packages), "remove": sorted(remove)}


# --------------------------------------------------------------------------------------------
# 2. Source trees (crane's fileset, and mkDummySrc's stand-in for buildDepsOnly)


def tracked_files():
    out = subprocess.run(
        ["git", "-C", REPO, "ls-files", "-z", "--cached"], capture_output=True, check=True
    ).stdout.decode()
    return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(REPO, p))]


def select(node, files, root):
    """Files (relative to root) the fileset stub tree `node` selects. Flakes copy only
    git-tracked files, so `files` is `git ls-files`."""
    kind = node.get("__fileset")

    def under(path):
        rel = os.path.relpath(path, root)
        if rel == ".":
            return files
        return [f for f in files if f == rel or f.startswith(rel + "/")]

    if kind == "unions":
        chosen = set()
        for item in node["items"]:
            chosen |= select(item, files, root)
        return chosen
    if kind == "maybeMissing":
        return set(under(node["path"]))
    if kind == "commonCargoSources":
        # crane lib/fileset/commonCargoSources.nix: Cargo.toml + Cargo.lock, *.rs, *.toml.
        return {
            f for f in under(node["path"])
            if os.path.basename(f) in ("Cargo.toml", "Cargo.lock") or f.endswith((".rs", ".toml"))
        }
    raise ParityError(
        f"nix/package.nix uses a fileset form run.py does not model: {json.dumps(node)[:200]} "
        "(add it to select() in scripts/sandbox-parity/run.py and to inputs.nix)"
    )


def make_source(src_node, dest):
    if src_node is None or src_node.get("__fileset") != "toSource":
        raise ParityError("the derivations' `src` is not a lib.fileset.toSource call")
    root = src_node["root"]
    chosen = sorted(select(src_node["fileset"], tracked_files(), root))
    shutil.rmtree(dest, ignore_errors=True)
    for rel in chosen:
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        # Keep the repository's mtimes (see Sandbox.run).
        shutil.copy2(os.path.join(root, rel), os.path.join(dest, rel))
    return chosen


# Our own stand-in for crane's mkDummySrc stub (crane lib/mkDummySrc.nix, v0.23.4): every
# target becomes an empty program so only dependencies get compiled.
DUMMY_RS = "#![allow(dead_code)]\npub fn main() {}\n"


def make_dummy_source(real, dest):
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for name in ("Cargo.toml", "Cargo.lock"):
        if os.path.exists(os.path.join(real, name)):
            shutil.copyfile(os.path.join(real, name), os.path.join(dest, name))
    with open(os.path.join(real, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    pkg = manifest.get("package", {})
    stubs = set()
    if pkg.get("autobins", True) and os.path.exists(os.path.join(real, "src/main.rs")):
        stubs.add("src/main.rs")
    if pkg.get("autobins", True):
        stubs.update(
            os.path.relpath(p, real) for p in glob.glob(os.path.join(real, "src/bin/*.rs"))
        )
    if "lib" in manifest or os.path.exists(os.path.join(real, "src/lib.rs")):
        stubs.add(manifest.get("lib", {}).get("path", "src/lib.rs"))
    defaults = {"bin": "src/bin", "bench": "benches", "example": "examples", "test": "tests"}
    for section, folder in defaults.items():
        for target in manifest.get(section, []):
            stubs.add(target.get("path", f"{folder}/{target['name']}.rs"))
    build = pkg.get("build", "build.rs" if os.path.exists(os.path.join(real, "build.rs")) else None)
    if isinstance(build, str):
        stubs.add(build)
    for rel in stubs:
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(dest, rel), "w", encoding="utf-8") as f:
            f.write(DUMMY_RS)


def vendor(work):
    """`cargo vendor` outside the sandbox (network allowed here, like crane's vendorCargoDeps)."""
    vendor_dir = os.path.join(work, "vendor")
    stamp = os.path.join(work, "vendor.lock-sha256")
    with open(os.path.join(REPO, "Cargo.lock"), "rb") as f:
        lock_hash = hashlib.sha256(f.read()).hexdigest()
    if os.path.isdir(vendor_dir) and os.path.exists(stamp) and open(stamp).read() == lock_hash:
        log("vendored crates are current")
        return vendor_dir
    shutil.rmtree(vendor_dir, ignore_errors=True)
    log("cargo vendor (outside the sandbox)")
    subprocess.run(
        ["cargo", "vendor", "--locked", "--versioned-dirs", "--quiet", vendor_dir],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL,
    )
    with open(stamp, "w") as f:
        f.write(lock_hash)
    return vendor_dir


CARGO_CONFIG = """\
# Written by scripts/sandbox-parity/run.py: crates come from the vendored directory only
# (crane's configureCargoVendoredDepsHook writes the same source replacement).
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/vendor"

[net]
offline = true
"""


# --------------------------------------------------------------------------------------------
# 3. Minimal Debian roots


def host_mirror():
    """The Debian mirror and release the host's apt uses (deb822 .sources or one-line .list)."""
    release = None
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("VERSION_CODENAME="):
                release = line.split("=", 1)[1].strip().strip('"')
    suite = os.environ.get("SANDBOX_PARITY_SUITE", release)
    if os.environ.get("SANDBOX_PARITY_MIRROR"):
        return os.environ["SANDBOX_PARITY_MIRROR"], suite
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in open(path).read().split("\n\n"):
            fields = dict(
                (k.strip(), v.strip())
                for k, v in (l.split(":", 1) for l in stanza.splitlines() if ":" in l and not l.startswith("#"))
            )
            if fields.get("Types", "") == "deb" and suite in fields.get("Suites", "").split():
                return fields["URIs"].split()[0], suite
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if not os.path.exists(path):
            continue
        for line in open(path):
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s", line)
            if m and m.group(2) == suite:
                return m.group(1), suite
    raise ParityError("cannot find the host's Debian mirror; set SANDBOX_PARITY_MIRROR")


def build_root(spec, cache):
    mirror, suite = host_mirror()
    key_src = json.dumps([ROOT_FORMAT, mirror, suite, spec["packages"], spec["remove"]])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    root = os.path.join(cache, "roots", key)
    if os.path.exists(os.path.join(root, ".parity-root")):
        return root
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    log(f"mmdebstrap {suite} from {mirror}: essential + {' '.join(spec['packages'])}")
    hooks = [
        # Share downloaded .debs between roots (mmdebstrap(1), "EXAMPLES").
        "--skip=download/empty", "--skip=essential/unlink",
        f'--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
        f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
        # The Nix sandbox has no /usr/bin/env (NIX-FACTS §7.2).
        '--customize-hook=rm -f "$1"/usr/bin/env "$1"/bin/env',
        # Mount points for bwrap (the root is bound read-only) and the sandbox's /etc/hosts.
        '--customize-hook=mkdir -p "$1"/build "$1"/rust "$1"/vendor "$1"/nextest/bin',
        "--customize-hook=printf '127.0.0.1 localhost\\n::1 localhost\\n' > \"$1\"/etc/hosts",
    ]
    for path in spec["remove"]:
        hooks.append(f'--customize-hook=rm -f "$1"{path}')
    cmd = [
        "mmdebstrap", "--quiet", "--variant=essential", "--mode=root",
        "--aptopt=Apt::Install-Recommends \"false\"",
        "--include=" + ",".join(spec["packages"]),
        *hooks, suite, tmp, mirror,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ParityError(f"mmdebstrap failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(os.path.join(tmp, ".parity-root"), "w") as f:
        f.write(key_src + "\n")
    os.rename(tmp, root)
    log(f"root {key} built in {time.monotonic() - started:.0f}s")
    return root


# --------------------------------------------------------------------------------------------
# 4. Running a step like the Nix sandbox


def env_value(v):
    # Nix passes derivation attributes as environment variables: true -> "1", false -> "".
    if v is True:
        return "1"
    if v is False:
        return ""
    return str(v)


class Sandbox:
    def __init__(self, work, vendor_dir, cores, reuse_target):
        self.work = work
        self.vendor_dir = vendor_dir
        self.cores = cores
        self.sysroot = subprocess.run(
            ["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True
        ).stdout.strip()
        # The shared target dir stands for cargoArtifacts: a fresh one per run, as buildDepsOnly
        # starts from nothing (--reuse-target keeps it for local iteration).
        self.target = os.path.join(work, "target")
        if not reuse_target:
            shutil.rmtree(self.target, ignore_errors=True)
        os.makedirs(self.target, exist_ok=True)
        os.makedirs(os.path.join(work, "logs"), exist_ok=True)
        self.cpu = {}

    def run(self, name, root, source, drv, script, extra_env=None, nextest=False, target=None):
        """Run `script` (bash) in `root` with `source` at /build/source. Returns (rc, log, s).

        The copied files get the current time, newer than every artifact in the target dir, so
        cargo rebuilds the workspace crate's targets as crane's derivations do: each one unpacks
        the real source over cargoArtifacts from buildDepsOnly's dummy build. (Keeping older
        mtimes would let the dummy lib's test binary pass for the real one.)"""
        target = target or self.target
        build = os.path.join(self.work, "build")
        shutil.rmtree(build, ignore_errors=True)
        src_dest = os.path.join(build, "source")
        shutil.copytree(source, src_dest, copy_function=shutil.copyfile)
        os.makedirs(os.path.join(src_dest, "target"))
        cargo_home = os.path.join(src_dest, ".cargo-home")
        os.makedirs(cargo_home)
        with open(os.path.join(cargo_home, "config.toml"), "w") as f:
            f.write(CARGO_CONFIG)

        env = {
            # What the Nix builder sets (Nix manual, "Derivations" / sandboxing).
            "PATH": ("/nextest/bin:" if nextest else "") + "/rust/bin:/usr/bin:/bin",
            "HOME": "/homeless-shelter",
            "NIX_BUILD_TOP": "/build",
            "TMPDIR": "/build", "TMP": "/build", "TEMP": "/build", "TEMPDIR": "/build",
            "NIX_BUILD_CORES": str(self.cores),
            "TERM": "xterm-256color",
            # crane's configureCargoCommonVarsHook.sh.
            "CARGO_HOME": "/build/source/.cargo-home",
            "CARGO_BUILD_JOBS": str(self.cores),
            "RUST_TEST_THREADS": str(self.cores),
            "CARGO_BUILD_INCREMENTAL": "false",
        }
        for k, v in drv["env"].items():
            env[k] = env_value(v)
        env.update(extra_env or {})

        cmd = [
            "bwrap",
            "--unshare-user", "--uid", "1000", "--gid", "100",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", "localhost", "--die-with-parent", "--new-session",
            "--ro-bind", root, "/",
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", build, "/build",
            "--bind", target, "/build/source/target",
            "--ro-bind", self.vendor_dir, "/vendor",
            "--ro-bind", self.sysroot, "/rust",
        ]
        if nextest:
            nextest_bin = shutil.which("cargo-nextest")
            if not nextest_bin:
                raise ParityError("cargo-nextest not found on the host PATH (crane provides it to cargoNextest)")
            # The root is read-only, so bind a directory holding a copy onto its /nextest/bin.
            nextest_dir = os.path.join(self.work, "nextest-bin")
            os.makedirs(nextest_dir, exist_ok=True)
            shutil.copy2(nextest_bin, os.path.join(nextest_dir, "cargo-nextest"))
            cmd += ["--ro-bind", nextest_dir, "/nextest/bin"]
        cmd += ["--clearenv"]
        for k, v in sorted(env.items()):
            cmd += ["--setenv", k, v]
        # bash's `times` on exit: CPU time of everything the step ran (cargo, rustc, cc, tests).
        traced = "trap 'echo PARITY-CPU; times' EXIT\n" + script
        cmd += ["--chdir", "/build/source", "/bin/bash", "-euo", "pipefail", "-c", traced]

        log_path = os.path.join(self.work, "logs", f"{name}.log")
        started = time.monotonic()
        with open(log_path, "w") as out:
            out.write(f"# root {root}\n# script: {script}\n")
            out.flush()
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        elapsed = time.monotonic() - started
        self.cpu[name] = cpu_seconds(log_path)
        return rc, log_path, elapsed


def cpu_seconds(log_path):
    """User + system CPU seconds of the step's processes, from the `times` its shell printed."""
    lines = open(log_path, errors="replace").read().splitlines()
    if "PARITY-CPU" not in lines:
        return 0.0
    i = len(lines) - 1 - lines[::-1].index("PARITY-CPU")
    total = 0.0
    for line in lines[i + 1 : i + 3]:
        for m in re.finditer(r"(\d+)m([\d.]+)s", line):
            total += int(m.group(1)) * 60 + float(m.group(2))
    return total


def tail(path, n=40):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


# --------------------------------------------------------------------------------------------
# 5. The steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default=",".join(DEFAULT_STEPS))
    parser.add_argument("--with-clippy", action="store_true")
    parser.add_argument("--with-fmt", action="store_true")
    parser.add_argument("--nextest-args", default="",
                        help="extra arguments for the nextest step (local debugging, e.g. a test filter)")
    parser.add_argument("--reuse-target", action="store_true",
                        help="keep the previous run's target dir (local iteration; CI starts empty)")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    if args.with_clippy:
        steps.append("clippy")
    if args.with_fmt:
        steps.append("fmt")

    work = os.path.abspath(os.environ.get("SANDBOX_PARITY_WORK", os.path.join(REPO, "target", "sandbox-parity")))
    cache = os.environ.get("SANDBOX_PARITY_CACHE", "/var/cache/cdcmon-sandbox-parity")
    cores = int(os.environ.get("SANDBOX_PARITY_CORES", str(os.cpu_count() or 1)))
    os.makedirs(work, exist_ok=True)
    total_started = time.monotonic()

    mapping = read_mapping()
    declared = evaluate()
    drvs = declared["derivations"]
    for needed in ("deps", "package", "nextest"):
        if needed not in drvs:
            raise ParityError(f"nix/package.nix no longer yields a '{needed}' crane derivation")
    specs = {name: root_spec(name, drv, mapping) for name, drv in drvs.items()}
    for name in sorted(specs):
        log(f"{name:8} ({drvs[name]['kind']}): {' '.join(specs[name]['inputs'])}")

    # The negative variants: the same file evaluated with one input omitted.
    no_curl = evaluate(omit=["curl"])["derivations"]
    no_promtool = evaluate(omit=["prometheus.cli"])["derivations"]
    if specs["deps"]["inputs"] == root_spec("deps", no_curl["deps"], mapping)["inputs"]:
        raise ParityError("omitting 'curl' did not change the deps inputs: is curl still declared?")

    src_real = os.path.join(work, "src-real")
    chosen = make_source(drvs["package"]["source"], src_real)
    src_dummy = os.path.join(work, "src-dummy")
    make_dummy_source(src_real, src_dummy)
    log(f"source: {len(chosen)} files from the crane fileset")
    vendor_dir = vendor(work)
    box = Sandbox(work, vendor_dir, cores, args.reuse_target)
    timings = []

    # Roots are built one after another in a background thread, in step order, so the next
    # step's root is ready while the current step compiles.
    step_specs = {
        "neg-curl": root_spec("deps", no_curl["deps"], mapping),
        "neg-promtool": root_spec("nextest", no_promtool["nextest"], mapping),
        **{name: specs[name] for name in ("deps", "package", "nextest", "clippy", "fmt") if name in specs},
    }
    if step_specs["neg-promtool"]["inputs"] == specs["nextest"]["inputs"]:
        raise ParityError("omitting 'prometheus.cli' did not change the nextest inputs: is promtool still declared?")
    for step in steps:
        if step not in step_specs:
            raise ParityError(f"unknown step '{step}' (or nix/package.nix has no such derivation)")
    builder = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    root_futures = {}
    for step in steps:
        key = json.dumps(step_specs[step], sort_keys=True)
        if key not in root_futures:
            root_futures[key] = builder.submit(build_root, step_specs[step], cache)

    def root_for(spec):
        started = time.monotonic()
        r = root_futures[json.dumps(spec, sort_keys=True)].result()
        waited = time.monotonic() - started
        if waited >= 1:
            timings.append(("waiting for root", waited))
        return r

    def expect_ok(name, rc, log_path, elapsed):
        timings.append((name, elapsed))
        if rc != 0:
            raise ParityError(f"step '{name}' failed (rc {rc}) after {elapsed:.0f}s; log {log_path}:\n{tail(log_path)}")
        log(f"step {name}: ok in {elapsed:.0f}s")

    def expect_fail(name, rc, log_path, elapsed, needle):
        timings.append((name, elapsed))
        text = open(log_path, errors="replace").read()
        if rc == 0:
            raise ParityError(f"negative step '{name}' succeeded; it must fail without the omitted input. Log {log_path}")
        if needle not in text:
            raise ParityError(
                f"negative step '{name}' failed, but not with '{needle}'; log {log_path}:\n{tail(log_path)}"
            )
        log(f"step {name}: failed as it must ('{needle}') in {elapsed:.0f}s")

    profile = drvs["deps"]["env"].get("CARGO_PROFILE", "release")
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        version = tomllib.load(f)["package"]["version"]

    def deps_extra(drv):
        return drv["env"].get("cargoExtraArgs", "--locked")

    try:
        for step in steps:
            log(f"== step {step}")
            if step == "neg-curl":
                drv = no_curl["deps"]
                root = root_for(root_spec("deps", drv, mapping))
                # Only rdkafka-sys: the crate whose build needs curl's headers.
                script = f"cargo build --profile {profile} {deps_extra(drv)} -p rdkafka-sys"
                # A derivation of its own: its own, empty target dir (no cargoArtifacts).
                neg_target = os.path.join(work, "target-neg-curl")
                shutil.rmtree(neg_target, ignore_errors=True)
                os.makedirs(neg_target)
                rc, lp, el = box.run("neg-curl", root, src_dummy, drv, script,
                                     {"CRANE_BUILD_DEPS_ONLY": "1"}, target=neg_target)
                shutil.rmtree(neg_target, ignore_errors=True)
                expect_fail("neg-curl", rc, lp, el, "curl/curl.h: No such file or directory")
            elif step == "deps":
                drv = drvs["deps"]
                root = root_for(specs["deps"])
                # crane lib/buildDepsOnly.nix: check --all-targets (when doCheck), build, test --no-run.
                do_check = drv["env"].get("doCheck", True) is not False
                extra = deps_extra(drv)
                script = f"cargo check --profile {profile} {extra} {'--all-targets' if do_check else ''}\n"
                script += f"cargo build --profile {profile} {extra}\n"
                if do_check:
                    script += f"cargo test --profile {profile} {extra} --no-run\n"
                rc, lp, el = box.run("deps", root, src_dummy, drv, script, {"CRANE_BUILD_DEPS_ONLY": "1"})
                expect_ok("deps", rc, lp, el)
            elif step == "package":
                drv = drvs["package"]
                root = root_for(specs["package"])
                extra = drv["env"].get("cargoExtraArgs", "--locked")
                script = f"cargo build --profile {profile} {extra} --message-format json-render-diagnostics > /build/cargoBuildLog.json\n"
                if drv["env"].get("doCheck", True) is not False:
                    script += f"cargo test --profile {profile} {extra}\n"
                # The installed binary must be the real one, not buildDepsOnly's dummy `main`.
                script += f"target/{profile}/cdcmon --version | grep -F 'cdcmon {version}'\n"
                rc, lp, el = box.run("package", root, src_real, drv, script)
                expect_ok("package", rc, lp, el)
            elif step in ("nextest", "neg-promtool"):
                drv = drvs["nextest"] if step == "nextest" else no_promtool["nextest"]
                root = root_for(root_spec("nextest", drv, mapping))
                env = drv["env"]
                # crane lib/cargoNextest.nix (partitions = 1): one `cargo nextest run`.
                base = (
                    f"cargo nextest run --cargo-profile {profile} {env.get('cargoExtraArgs', '')} "
                    f"{env.get('cargoNextestExtraArgs', '')} {env.get('cargoNextestPartitionsExtraArgs', '')}"
                )
                if step == "nextest":
                    script = "cargo nextest --version\n" + base + " " + args.nextest_args
                    rc, lp, el = box.run("nextest", root, src_real, drv, script,
                                         {"NEXTEST_SHOW_PROGRESS": "counter"}, nextest=True)
                    expect_ok("nextest", rc, lp, el)
                else:
                    # Only the promtool tests; their binaries are already built by the nextest step.
                    script = base + " --test monitoring_prometheus"
                    rc, lp, el = box.run("neg-promtool", root, src_real, drv, script,
                                         {"NEXTEST_SHOW_PROGRESS": "counter"}, nextest=True)
                    expect_fail("neg-promtool", rc, lp, el, "promtool not found on PATH")
            elif step == "clippy":
                drv = drvs["clippy"]
                root = root_for(specs["clippy"])
                extra = drv["env"].get("cargoExtraArgs", "--locked")
                script = f"cargo clippy --profile {profile} {extra} {drv['env'].get('cargoClippyExtraArgs', '')}"
                rc, lp, el = box.run("clippy", root, src_real, drv, script)
                expect_ok("clippy", rc, lp, el)
            elif step == "fmt":
                drv = drvs["fmt"]
                root = root_for(specs["fmt"])
                # crane lib/cargoFmt.nix: `cargo fmt ${cargoExtraArgs} -- --check`.
                rc, lp, el = box.run("fmt", root, src_real, drv,
                                     f"cargo fmt {drv['env'].get('cargoExtraArgs', '')} -- --check")
                expect_ok("fmt", rc, lp, el)
            else:
                raise ParityError(f"unknown step '{step}'")

    finally:
        builder.shutdown(wait=False, cancel_futures=True)
    total = time.monotonic() - total_started
    summary = ", ".join(
        f"{n} {t:.0f}s" + (f" (cpu {box.cpu[n]:.0f}s)" if n in box.cpu else "") for n, t in timings
    )
    log(f"passed: {' '.join(steps)} in {total:.0f}s wall: {summary}")
    log(f"CPU time of the sandboxed steps: {sum(box.cpu.values()):.0f}s")


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("sandbox-parity: run as root (mmdebstrap --mode=root, bwrap uid maps)", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except ParityError as e:
        print(f"sandbox-parity: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print(f"sandbox-parity: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
