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

# QEMU must be at least this major version (the `virt` board facts lodger
# relies on, docs/ARCHITECTURE.md, were checked on 10.0; Debian bookworm
# itself ships 7.2).
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
  install [ARCH...] [nested-kvm] [la-pvhost] [libvirt]
                only install what is missing: QEMU >= 10 and the Rust
                pieces for each ARCH (aarch64, loongarch64), for
                nested-kvm what --host nested-kvm needs (cpio,
                binutils-aarch64-linux-gnu, apt's arm64 architecture),
                for la-pvhost what building the LoongArch PV QEMU needs
                (ninja, glib, pixman, libfdt, flex, bison, meson ...),
                for libvirt virt-xml-validate (libvirt-clients);
                default: all that the tests need. Not root and no sudo:
                prints the commands to run as root and exits 1
  plan [WHAT...]
                print the commands install would run as root here on a
                machine with nothing installed (the same WHATs); changes
                nothing
  help          this text

The guest's exit status becomes this script's exit status (124: the guest
timed out, 125: no status, 2: a command line refused); README.md, "Exit
status", lists them all.
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
# The system: which distribution, which machine, where its packages come from
# ---------------------------------------------------------------------------

# Both overridable to test the distribution logic (.ci/run-sh-plan.sh).
readonly OS_RELEASE=${LODGER_OS_RELEASE:-/etc/os-release}
readonly HOST_ARCH=${LODGER_HOST_ARCH:-$(uname -m)}

# Prints "ID CODENAME" from os-release, e.g. "debian bookworm", "ubuntu noble".
os_id() {
    if [[ ! -r $OS_RELEASE ]]; then
        echo "unknown unknown"
        return 0
    fi
    # shellcheck disable=SC1090 # a system file, read for ID and VERSION_CODENAME
    (. "$OS_RELEASE" && printf '%s %s\n' "${ID:-unknown}" "${VERSION_CODENAME:-unknown}")
}

# The system's name for messages, e.g. "Debian GNU/Linux 12 (bookworm) on x86_64".
os_name() {
    local name="an unknown system ($OS_RELEASE unreadable)"
    if [[ -r $OS_RELEASE ]]; then
        # shellcheck disable=SC1090
        name=$(. "$OS_RELEASE" && printf '%s\n' "${PRETTY_NAME:-${ID:-unknown}}")
    fi
    printf '%s on %s\n' "$name" "$HOST_ARCH"
}

is_debian() { [[ $(os_id) == "debian "* ]]; }
is_debian_bookworm() { [[ $(os_id) == "debian bookworm" ]]; }

# Where this system's QEMU >= QEMU_MIN_MAJOR comes from: "main" (the
# distribution itself) or "bookworm-backports"; fails, printing why, where
# the distribution has none. Debian 13 ships 10.0, testing and unstable
# (and so Debian-ports' loong64, which tracks unstable) newer; bookworm has
# 7.2 and bookworm-backports 10.0; Ubuntu 24.04 has 8.2.
qemu_suite() {
    case $(os_id) in
    "debian bookworm") echo bookworm-backports ;;
    "debian trixie" | "debian forky" | "debian sid") echo main ;;
    "ubuntu noble") echo "Ubuntu 24.04 ships QEMU 8.2" && return 1 ;;
    *) echo "run.sh does not know where $(os_name) has QEMU >= $QEMU_MIN_MAJOR" && return 1 ;;
    esac
}

# Where virt-xml-validate with a schema that knows loongarch64 comes from.
libvirt_suite() {
    case $(os_id) in
    "debian bookworm") echo bookworm-backports ;;
    *) echo main ;;
    esac
}

# ---------------------------------------------------------------------------
# What needs root: steps, carried out, or collected to be shown
# ---------------------------------------------------------------------------

# ./run.sh plan: nothing counts as installed, and the steps are only shown.
FRESH=0
# Collect the steps instead of carrying them out (plan, or not root).
COLLECT=0
# The steps collected so far, as the commands that carry them out.
COLLECTED=()
# A bookworm-backports source was collected (so later steps do not add another).
COLLECTED_BACKPORTS=0

have_cmd() { [[ $FRESH -eq 0 ]] && command -v "$1" >/dev/null; }
have_pkg() {
    [[ $FRESH -eq 0 ]] && dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

backports_enabled() {
    [[ $COLLECTED_BACKPORTS -eq 1 ]] ||
        grep -rsqE '^[^#]*bookworm-backports' "$APT_DIR"/sources.list "$APT_DIR"/sources.list.d/
}

# The deb822 source for bookworm-backports on mirror $1 with key $2 (may be empty).
backports_source() {
    local content
    content="# Written by lodger's run.sh: QEMU >= $QEMU_MIN_MAJOR comes from bookworm-backports.
Types: deb
URIs: $1
Suites: bookworm-backports
Components: main"
    [[ -n $2 ]] && content+=$'\n'"Signed-By: $2"
    printf '%s\n' "$content"
}

# Prints the step's command, as root would run it (without sudo).
#   backports URI [KEY]    the bookworm-backports source
#   add-arch ARCH          dpkg --add-architecture
#   update                 apt-get update
#   install SUITE PKG...   apt-get install (SUITE main: the default release)
show_step() {
    local kind=$1
    shift
    case $kind in
    backports)
        printf "tee %s >/dev/null <<'EOF'\n%s\nEOF\n" "$BACKPORTS_FILE" "$(backports_source "$1" "${2:-}")"
        ;;
    add-arch) printf 'dpkg --add-architecture %s\n' "$1" ;;
    update) printf 'apt-get -q update\n' ;;
    install)
        local suite=$1 release=""
        shift
        [[ $suite != main ]] && release="-t $suite "
        printf 'env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends %s%s\n' \
            "$release" "$*"
        ;;
    esac
}

# step KIND ARGS...: carries out one step as root, or collects it.
step() {
    if [[ $COLLECT -eq 1 ]]; then
        [[ $1 == backports ]] && COLLECTED_BACKPORTS=1
        COLLECTED+=("$(show_step "$@")")
        return 0
    fi
    local kind=$1
    shift
    case $kind in
    backports)
        say "enabling bookworm-backports from the mirror already configured ($1)"
        backports_source "$1" "${2:-}" | as_root tee "$BACKPORTS_FILE" >/dev/null
        ;;
    add-arch) as_root dpkg --add-architecture "$1" ;;
    update) as_root apt-get -q update ;;
    install)
        local suite=$1
        shift
        if [[ $suite == main ]]; then
            as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get -y -q install --no-install-recommends "$@"
        else
            as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get -y -q install --no-install-recommends -t "$suite" "$@"
        fi
        ;;
    esac
}

# install_from SUITE PKG...: the steps that install PKGs from SUITE: the
# bookworm-backports source first when it is not there yet, and fresh
# package lists after it.
install_from() {
    local suite=$1
    shift
    if [[ $suite == bookworm-backports ]] && ! backports_enabled; then
        local line
        line=$(bookworm_mirror) ||
            die "found no apt source for 'bookworm' to reuse for bookworm-backports; add bookworm-backports to your apt sources and re-run"
        step backports "${line%%$'\t'*}" "${line#*$'\t'}"
        step update
    elif [[ $suite == main ]] && ! is_debian_bookworm; then
        # A fresh container has no package lists.
        step update
    fi
    step install "$suite" "$@"
}

# cannot MESSAGE: what this system cannot have; plan shows it and goes on.
PLAN_FAILED=0
cannot() {
    if [[ $FRESH -eq 1 ]]; then
        COLLECTED+=("# cannot: $*")
        PLAN_FAILED=1
        return 0
    fi
    die "$*"
}

# Shows what was collected (not root, or plan) and stops, 1 if anything was.
finish_collected() {
    [[ ${#COLLECTED[@]} -gt 0 ]] || return 0
    if [[ $FRESH -eq 1 ]]; then
        printf '%s\n' "${COLLECTED[@]}"
        return "$PLAN_FAILED"
    fi
    say "not root and no sudo: as root, run"
    printf '%s\n' "${COLLECTED[@]}" >&2
    die "then re-run"
}

# ---------------------------------------------------------------------------
# QEMU
# ---------------------------------------------------------------------------

# Prints the major version of QEMU binary $1, or nothing if it is missing.
qemu_major() {
    have_cmd "$1" || return 0
    "$1" --version 2>/dev/null |
        sed -n '1s/^QEMU emulator version \([0-9][0-9]*\)\..*/\1/p'
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


# ensure_qemu BINARY PACKAGE: BINARY at version >= QEMU_MIN_MAJOR, installed
# from the distribution's PACKAGE (bookworm: from bookworm-backports) when
# missing or too old.
ensure_qemu() {
    local bin=$1 pkg=$2 major suite
    major=$(qemu_major "$bin")
    if [[ -n $major && $major -ge $QEMU_MIN_MAJOR ]]; then
        return 0
    fi
    local need="QEMU >= $QEMU_MIN_MAJOR with $bin (Debian package $pkg)"
    if [[ $FRESH -eq 1 ]]; then
        :
    elif [[ -n $major ]]; then
        say "$bin is version $major; need $need"
    else
        say "$bin not found; need $need"
    fi
    if ! suite=$(qemu_suite); then
        cannot "$suite: please install $need yourself, then re-run"
        return 0
    fi
    install_from "$suite" "$pkg"
    [[ $COLLECT -eq 1 ]] && return 0
    major=$(qemu_major "$bin")
    [[ -n $major && $major -ge $QEMU_MIN_MAJOR ]] ||
        die "installed $pkg but $bin is still not >= $QEMU_MIN_MAJOR (found '${major:-none}')"
    say "$("$bin" --version | head -n 1)"
}

# virt-xml-validate for the test of `cargo xtask libvirt`'s XML.
ensure_libvirt_clients() {
    have_cmd virt-xml-validate && return 0
    if ! is_debian && [[ $(os_id) != ubuntu* ]]; then
        cannot "please install virt-xml-validate (libvirt's clients) yourself, then re-run"
        return 0
    fi
    install_from "$(libvirt_suite)" libvirt-clients
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
# build. The one definition: xtask reads this line (xtask/src/arch.rs).
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
# (multiarch on x86_64; native on arm64), aarch64-linux-gnu-readelf to list
# the libraries an arm64 binary needs, and GNU cpio to pack L1's initramfs.
# The packages themselves are fetched by xtask, with apt-get download, into
# target/nested-kvm/. Debian only (Ubuntu's archive has no
# linux-image-cloud-arm64), on x86_64 or aarch64: Debian-ports, where
# loong64 lives, has no arm64 packages.
ensure_nested_kvm() {
    if ! is_debian; then
        cannot "--host nested-kvm builds its L1 from Debian's arm64 packages: not on $(os_name)"
        return 0
    fi
    case $HOST_ARCH in
    x86_64 | aarch64) ;;
    *)
        cannot "--host nested-kvm needs Debian's arm64 packages, which $(os_name) cannot fetch (Debian-ports has no arm64)"
        return 0
        ;;
    esac
    if [[ $FRESH -eq 0 ]] && { ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; }; then
        die "--host nested-kvm builds its L1 from Debian packages: it needs Debian's dpkg and apt"
    fi
    local missing=() add_arm64=0
    have_cmd cpio || missing+=(cpio)
    have_cmd aarch64-linux-gnu-readelf || missing+=(binutils-aarch64-linux-gnu)
    if [[ $HOST_ARCH != aarch64 ]]; then
        { [[ $FRESH -eq 0 ]] && dpkg --print-foreign-architectures | grep -qx arm64; } || add_arm64=1
    fi
    if [[ ${#missing[@]} -eq 0 && $add_arm64 -eq 0 ]]; then
        return 0
    fi
    if [[ $add_arm64 -eq 1 ]]; then
        [[ $COLLECT -eq 1 ]] ||
            say "adding the arm64 architecture to apt (nested KVM runs Debian's arm64 kernel and QEMU)"
        step add-arch arm64
    fi
    # New architecture or packages to install: fresh lists either way.
    step update
    if [[ ${#missing[@]} -gt 0 ]]; then
        step install main "${missing[@]}"
    fi
}

# ---------------------------------------------------------------------------
# The LoongArch PV QEMU (--arch loongarch64 --host pvhost)
# ---------------------------------------------------------------------------

# What xtask needs to build QEMU with host/qemu-loongarch-kvm-pv.patch
# (xtask/src/qemu_pv.rs): the build tools and libraries, and meson >= 1.5
# and pycotap from bookworm-backports (the +ds tarball bundles neither).
# Debian 12 only: xtask fetches QEMU 10.0.2's source from bookworm-backports.
readonly QEMU_PV_DEPS=(ninja-build libglib2.0-dev libpixman-1-dev libfdt-dev
    python3-venv flex bison pkg-config patch xz-utils)
readonly QEMU_PV_BACKPORTS=(meson python3-pycotap)
ensure_qemu_pv() {
    if ! is_debian_bookworm; then
        cannot "--arch loongarch64 --host pvhost builds QEMU from bookworm-backports' source: Debian 12 only, not $(os_name)"
        return 0
    fi
    local missing=() missing_bpo=() pkg
    [[ $FRESH -eq 1 ]] || command -v dpkg-query >/dev/null ||
        die "--host pvhost for loongarch64 builds Debian's QEMU source: it needs dpkg and apt"
    for pkg in "${QEMU_PV_DEPS[@]}"; do
        have_pkg "$pkg" || missing+=("$pkg")
    done
    for pkg in "${QEMU_PV_BACKPORTS[@]}"; do
        have_pkg "$pkg" || missing_bpo+=("$pkg")
    done
    # meson from bookworm itself (1.0) is too old for QEMU 10.
    if [[ ${#missing_bpo[@]} -eq 0 ]] && ! dpkg --compare-versions \
        "$(dpkg-query -W -f='${Version}' meson)" ge 1.5; then
        missing_bpo+=(meson)
    fi
    if [[ ${#missing[@]} -eq 0 && ${#missing_bpo[@]} -eq 0 ]]; then
        return 0
    fi
    [[ $COLLECT -eq 1 ]] ||
        say "installing what the LoongArch PV QEMU build needs: ${missing[*]} ${missing_bpo[*]}"
    if [[ ${#missing[@]} -gt 0 ]]; then
        step install main "${missing[@]}"
    fi
    if [[ ${#missing_bpo[@]} -gt 0 ]]; then
        install_from bookworm-backports "${missing_bpo[@]}"
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
        [[ $FRESH -eq 1 ]] || ensure_target aarch64-unknown-none
        ensure_qemu qemu-system-aarch64 qemu-system-arm
        ;;
    loongarch64)
        # No prebuilt core for loongarch64-unknown-none on stable.
        [[ $FRESH -eq 1 ]] || ensure_nightly_rust_src
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
# (and, for the word nested-kvm, to run them under nested KVM; la-pvhost,
# to build the LoongArch PV QEMU; libvirt, to validate libvirt XML). Not
# root and no sudo: it shows every command that needs root, and stops.
install() {
    [[ $FRESH -eq 1 ]] || ensure_cargo
    can_be_root || COLLECT=1
    local what
    for what in "$@"; do
        case $what in
        nested-kvm) ensure_nested_kvm ;;
        la-pvhost) ensure_qemu_pv ;;
        libvirt) ensure_libvirt_clients ;;
        *) ensure_arch "$what" ;;
        esac
    done
    finish_collected
}

# What `./run.sh test` (and `./run.sh install` without arguments) installs.
readonly TEST_NEEDS=("${TEST_ARCHES[@]}" nested-kvm la-pvhost libvirt)

# ./run.sh plan [WHAT...]: the commands that `install` would run as root on
# this system with nothing installed, one a line; nothing is changed. For
# tests of the distribution logic: LODGER_OS_RELEASE, LODGER_APT_DIR and
# LODGER_HOST_ARCH stand for /etc/os-release, /etc/apt and uname -m.
plan() {
    FRESH=1
    COLLECT=1
    say "plan for $(os_name), apt configuration in $APT_DIR"
    install "$@"
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
        install "${TEST_NEEDS[@]}"
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
            set -- "${TEST_NEEDS[@]}"
        fi
        install "$@"
        ensure_rust_tools
        say "everything is installed"
        ;;
    plan)
        if [[ $# -eq 0 ]]; then
            set -- "${TEST_NEEDS[@]}"
        fi
        plan "$@"
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
