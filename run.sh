#!/usr/bin/env bash
# One entry point for people and CI. It installs what is missing, then hands
# over to `cargo xtask`, which does the real work (see README.md).
#
#   ./run.sh              the demo: lockstorm PV on vs off under pvhost's steal
#   ./run.sh demo FLAGS   the same with cargo xtask demo FLAGS (--host, --arch, ...)
#   ./run.sh selftest     boot the selftest on 4 CPUs under QEMU TCG
#   ./run.sh test         host tests, lints and the QEMU boot tests
#   ./run.sh run ARGS...  cargo xtask run ARGS...
#   ./run.sh install [ARCH...]  only install what is missing
#   ./run.sh help         this text
set -euo pipefail

# QEMU must be at least this major version (the `virt` board facts in the
# project notes were checked on 10.0; Debian bookworm itself ships 7.2).
readonly QEMU_MIN_MAJOR=10
# The apt configuration directory (overridable only to test the parsing below).
readonly APT_DIR=${LODGER_APT_DIR:-/etc/apt}
readonly BACKPORTS_FILE=$APT_DIR/sources.list.d/lodger-backports.sources

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Print a command, then run it (the same convention as xtask).
run() {
    printf '$ %s\n' "$*" >&2
    "$@"
}

usage() {
    cat <<'EOF'
usage: ./run.sh [COMMAND]

  (none), demo [FLAGS]
                install what is missing, then run the demo: cargo xtask demo
                [FLAGS]: lockstorm with PV on and with PV off, side by side
                (default: pvhost with a preemption schedule, aarch64, 4 vCPUs;
                --host nested-kvm|tcg, --arch, --smp N, --steal, --quick,
                --reps N), a table of the results, the full report in
                target/demo/demo.{md,json,svg}
  selftest      install, then boot the in-guest tests on 4 CPUs:
                cargo xtask run --arch aarch64 --smp 4 --host tcg --app selftest
  test          install, then run every test: cargo xtask test
  run ARGS...   install, then cargo xtask run ARGS...  (see: cargo xtask run --help)
  install [ARCH...] [nested-kvm] [la-pvhost]
                only install what is missing: QEMU >= 10 and the Rust
                pieces for each ARCH (aarch64, loongarch64), for
                nested-kvm what --host nested-kvm needs (cpio,
                binutils-aarch64-linux-gnu, apt's arm64 architecture),
                for la-pvhost what building the LoongArch PV QEMU needs
                (ninja, glib, pixman, libfdt, flex, bison, meson ...);
                default: all that the tests need
  help          this text

The guest's exit status becomes this script's exit status; 124 means the
guest timed out, 125 that it stopped without reporting a status. The demo
exits 1 when a boot failed, 2 for a host and arch that cannot run it.
EOF
}

# ---------------------------------------------------------------------------
# Privileges
# ---------------------------------------------------------------------------

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        run "$@"
    elif command -v sudo >/dev/null; then
        run sudo "$@"
    else
        die "need root to run '$*' (not root, and sudo is missing)"
    fi
}

can_be_root() {
    [[ $(id -u) -eq 0 ]] || command -v sudo >/dev/null
}

# ---------------------------------------------------------------------------
# QEMU
# ---------------------------------------------------------------------------

# Prints the major version of QEMU binary $1, or nothing if it is missing.
qemu_major() {
    command -v "$1" >/dev/null || return 0
    "$1" --version 2>/dev/null |
        sed -n '1s/^QEMU emulator version \([0-9][0-9]*\)\..*/\1/p'
}

is_debian_bookworm() {
    [[ -r /etc/os-release ]] || return 1
    # shellcheck disable=SC1091 # a system file, read for ID and VERSION_CODENAME
    (. /etc/os-release && [[ ${ID:-} == debian && ${VERSION_CODENAME:-} == bookworm ]])
}

# Prints "URI<TAB>SIGNED-BY" for the first enabled apt source that serves the
# `bookworm` suite itself (not -updates/-security), so backports come from the
# same mirror the machine already uses. SIGNED-BY may be empty.
bookworm_mirror() {
    local f
    # deb822 files: paragraphs separated by blank lines.
    for f in "$APT_DIR"/sources.list.d/*.sources; do
        [[ -r $f && $f != "$BACKPORTS_FILE" ]] || continue
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ &&
                    tolower(enabled) != "no" && uri != "") {
                    printf "%s\t%s\n", uri, signed
                    found = 1
                    exit
                }
                types = suites = uri = signed = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { next }  # continuation line (e.g. an inline Signed-By key)
            {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                if (key == "types") types = val
                else if (key == "suites") suites = val
                else if (key == "uris") { split(val, u, /[ \t]+/); uri = u[1] }
                else if (key == "signed-by") signed = val
                else if (key == "enabled") enabled = val
            }
            END { if (!found) flush() }
        ' "$f" | head -n 1 | grep . && return 0
    done
    # One-line format: deb [options] URI SUITE COMPONENT...
    for f in "$APT_DIR"/sources.list "$APT_DIR"/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        awk '
            $1 != "deb" { next }
            {
                i = 2; signed = ""
                if ($i ~ /^\[/) {
                    while (i <= NF) {
                        if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
                        if ($i ~ /\]$/) { i++; break }
                        i++
                    }
                }
                if ($(i + 1) == "bookworm") { printf "%s\t%s\n", $i, signed; exit }
            }
        ' "$f" | head -n 1 | grep . && return 0
    done
    return 1
}

backports_enabled() {
    grep -rsqE '^[^#]*bookworm-backports' "$APT_DIR"/sources.list "$APT_DIR"/sources.list.d/
}

enable_backports() {
    backports_enabled && return 0
    local line uri signed
    line=$(bookworm_mirror) ||
        die "found no apt source for 'bookworm' to reuse for bookworm-backports; add bookworm-backports to your apt sources and re-run"
    uri=${line%%$'\t'*}
    signed=${line#*$'\t'}
    say "enabling bookworm-backports from the mirror already configured ($uri)"
    local content
    content="# Written by lodger's run.sh: QEMU >= $QEMU_MIN_MAJOR comes from bookworm-backports.
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main"
    [[ -n $signed ]] && content+=$'\n'"Signed-By: $signed"
    printf '%s\n' "$content" | as_root tee "$BACKPORTS_FILE" >/dev/null
    as_root apt-get -q update
}

# ensure_qemu BINARY PACKAGE: BINARY at version >= QEMU_MIN_MAJOR, installed
# from bookworm-backports' PACKAGE when missing or too old.
ensure_qemu() {
    local bin=$1 pkg=$2 major
    major=$(qemu_major "$bin")
    if [[ -n $major && $major -ge $QEMU_MIN_MAJOR ]]; then
        return 0
    fi
    local need="QEMU >= $QEMU_MIN_MAJOR with $bin (Debian package $pkg)"
    if [[ -n $major ]]; then
        say "$bin is version $major; need $need"
    else
        say "$bin not found; need $need"
    fi
    is_debian_bookworm ||
        die "not Debian bookworm: please install $need yourself, then re-run"
    can_be_root ||
        die "not root and no sudo: please install $pkg from bookworm-backports (apt-get install -t bookworm-backports $pkg), then re-run"
    enable_backports
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -y -q install --no-install-recommends -t bookworm-backports "$pkg"
    major=$(qemu_major "$bin")
    [[ -n $major && $major -ge $QEMU_MIN_MAJOR ]] ||
        die "installed $pkg but $bin is still not >= $QEMU_MIN_MAJOR (found '${major:-none}')"
    say "$("$bin" --version | head -n 1)"
}

# ---------------------------------------------------------------------------
# Rust
# ---------------------------------------------------------------------------

ensure_cargo() {
    command -v cargo >/dev/null ||
        die "cargo not found: install Rust with rustup (stable toolchain), then re-run"
}

# ensure_target TRIPLE: the prebuilt standard library for a bare-metal target.
ensure_target() {
    if ! command -v rustup >/dev/null; then
        say "rustup not found: assuming this Rust already has the $1 target"
        return 0
    fi
    if ! rustup target list --installed | grep -qx "$1"; then
        run rustup target add "$1"
    fi
}

# Targets without a prebuilt standard library build core/alloc from source
# with this nightly (-Zbuild-std). Pinned so a new nightly cannot break the
# build; keep in step with NIGHTLY in xtask/src/arch.rs (a unit test checks).
readonly NIGHTLY=nightly-2026-05-20
ensure_nightly_rust_src() {
    command -v rustup >/dev/null ||
        die "need rustup to install the $NIGHTLY toolchain with rust-src"
    local installed
    installed=$(rustup component list --installed --toolchain "$NIGHTLY" 2>/dev/null || true)
    if ! grep -q '^rust-src' <<<"$installed" || ! grep -q '^clippy' <<<"$installed"; then
        run rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src,clippy
    fi
}

# `cargo xtask test` checks formatting and lints.
ensure_rust_tools() {
    command -v rustup >/dev/null || return 0
    local installed missing=()
    installed=$(rustup component list --installed)
    grep -q '^rustfmt' <<<"$installed" || missing+=(rustfmt)
    grep -q '^clippy' <<<"$installed" || missing+=(clippy)
    if [[ ${#missing[@]} -gt 0 ]]; then
        run rustup component add "${missing[@]}"
    fi
}

# ---------------------------------------------------------------------------
# Real KVM, nested (--host nested-kvm)
# ---------------------------------------------------------------------------

# What `cargo xtask` needs to make the nested-KVM L1 from Debian's arm64
# packages (xtask/src/nested_kvm.rs): apt knowing the arm64 packages
# (multiarch), aarch64-linux-gnu-readelf to list the libraries an arm64
# binary needs, and GNU cpio to pack L1's initramfs. The packages themselves
# are fetched by xtask, with apt-get download, into target/nested-kvm/.
ensure_nested_kvm() {
    local missing=() add_arm64=0
    command -v cpio >/dev/null || missing+=(cpio)
    command -v aarch64-linux-gnu-readelf >/dev/null || missing+=(binutils-aarch64-linux-gnu)
    if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
        die "--host nested-kvm builds its L1 from Debian packages: it needs Debian's dpkg and apt"
    fi
    dpkg --print-foreign-architectures | grep -qx arm64 || add_arm64=1
    if [[ ${#missing[@]} -eq 0 && $add_arm64 -eq 0 ]]; then
        return 0
    fi
    can_be_root || die "not root and no sudo: as root, run 'dpkg --add-architecture arm64 && apt-get update && apt-get install cpio binutils-aarch64-linux-gnu', then re-run"
    if [[ $add_arm64 -eq 1 ]]; then
        say "adding the arm64 architecture to apt (nested KVM runs Debian's arm64 kernel and QEMU)"
        as_root dpkg --add-architecture arm64
    fi
    # New architecture or packages to install: fresh lists either way.
    as_root apt-get -q update
    if [[ ${#missing[@]} -gt 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get -y -q install --no-install-recommends "${missing[@]}"
    fi
}

# ---------------------------------------------------------------------------
# The LoongArch PV QEMU (--arch loongarch64 --host pvhost)
# ---------------------------------------------------------------------------

# What xtask needs to build QEMU with host/qemu-loongarch-kvm-pv.patch
# (xtask/src/qemu_pv.rs): the build tools and libraries, and meson >= 1.5
# and pycotap from bookworm-backports (the +ds tarball bundles neither).
readonly QEMU_PV_DEPS=(ninja-build libglib2.0-dev libpixman-1-dev libfdt-dev
    python3-venv flex bison pkg-config patch xz-utils)
readonly QEMU_PV_BACKPORTS=(meson python3-pycotap)
ensure_qemu_pv() {
    local missing=() missing_bpo=() pkg
    command -v dpkg-query >/dev/null ||
        die "--host pvhost for loongarch64 builds Debian's QEMU source: it needs dpkg and apt"
    for pkg in "${QEMU_PV_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    for pkg in "${QEMU_PV_BACKPORTS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing_bpo+=("$pkg")
    done
    # meson from bookworm itself (1.0) is too old for QEMU 10.
    if [[ ${#missing_bpo[@]} -eq 0 ]] && ! dpkg --compare-versions \
        "$(dpkg-query -W -f='${Version}' meson)" ge 1.5; then
        missing_bpo+=(meson)
    fi
    if [[ ${#missing[@]} -eq 0 && ${#missing_bpo[@]} -eq 0 ]]; then
        return 0
    fi
    can_be_root ||
        die "not root and no sudo: please install ${missing[*]} and, from bookworm-backports, ${missing_bpo[*]}, then re-run"
    say "installing what the LoongArch PV QEMU build needs: ${missing[*]} ${missing_bpo[*]}"
    if [[ ${#missing[@]} -gt 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get -y -q install --no-install-recommends "${missing[@]}"
    fi
    if [[ ${#missing_bpo[@]} -gt 0 ]]; then
        enable_backports
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get -y -q install --no-install-recommends -t bookworm-backports "${missing_bpo[@]}"
    fi
}

# Whether an xtask command line asks for --host HOST (default nested-kvm).
wants_nested_kvm() {
    local host=${WANTS_HOST:-nested-kvm}
    while [[ $# -gt 0 ]]; do
        case $1 in
        --host) [[ ${2:-} == "$host" ]] && return 0 ;;
        --host="$host") return 0 ;;
        --) break ;;
        esac
        shift
    done
    return 1
}

# ---------------------------------------------------------------------------
# Per guest architecture
# ---------------------------------------------------------------------------

# The architectures `cargo xtask test` boots: keep in step with the `arch`
# fields of xtask/src/boot_tests.rs.
readonly TEST_ARCHES=(aarch64 loongarch64)

# ensure_arch ARCH: the Rust target and the QEMU that one architecture needs.
ensure_arch() {
    case $1 in
    aarch64)
        ensure_target aarch64-unknown-none
        ensure_qemu qemu-system-aarch64 qemu-system-arm
        ;;
    loongarch64)
        # No prebuilt core for loongarch64-unknown-none on stable.
        ensure_nightly_rust_src
        ensure_qemu qemu-system-loongarch64 qemu-system-misc
        ;;
    *) ;; # not an architecture: `cargo xtask` will say so
    esac
}

# Prints the --arch of an xtask command line (aarch64 when there is none).
arch_of() {
    local arch=aarch64
    while [[ $# -gt 0 ]]; do
        case $1 in
        --arch)
            arch=${2:-}
            if [[ $# -gt 1 ]]; then shift; fi
            ;;
        --arch=*) arch=${1#--arch=} ;;
        --) break ;;
        esac
        shift
    done
    printf '%s\n' "$arch"
}

# install WHAT...: everything needed to build and boot these architectures
# (and, for the word nested-kvm, to run them under nested KVM).
install() {
    ensure_cargo
    local what
    for what in "$@"; do
        case $what in
        nested-kvm) ensure_nested_kvm ;;
        la-pvhost) ensure_qemu_pv ;;
        *) ensure_arch "$what" ;;
        esac
    done
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")"
    local cmd=${1:-demo}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    demo)
        install "$(arch_of "$@")"
        if wants_nested_kvm "$@"; then
            install nested-kvm
        fi
        exec cargo xtask demo "$@"
        ;;
    selftest)
        install aarch64
        exec cargo xtask run --arch aarch64 --smp 4 --host tcg --app selftest
        ;;
    test)
        # The boot tests include nested-KVM and LoongArch pvhost ones.
        install "${TEST_ARCHES[@]}" nested-kvm la-pvhost
        ensure_rust_tools
        exec cargo xtask test "$@"
        ;;
    run)
        install "$(arch_of "$@")"
        if wants_nested_kvm "$@"; then
            install nested-kvm
        fi
        if [[ $(arch_of "$@") == loongarch64 ]] && WANTS_HOST=pvhost wants_nested_kvm "$@"; then
            install la-pvhost
        fi
        exec cargo xtask run "$@"
        ;;
    install)
        if [[ $# -eq 0 ]]; then
            set -- "${TEST_ARCHES[@]}" nested-kvm la-pvhost
        fi
        install "$@"
        ensure_rust_tools
        say "everything is installed"
        ;;
    help | -h | --help)
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

# Sourcing the script (to test its functions) defines them and stops here.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
