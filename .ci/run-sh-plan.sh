#!/usr/bin/env bash
# run.sh's distribution logic against sample systems: `./run.sh plan`
# (what install would run as root on a bare machine, changing nothing) with
# LODGER_OS_RELEASE, LODGER_APT_DIR and LODGER_HOST_ARCH standing for
# /etc/os-release, /etc/apt and uname -m. Supported: Debian 12 (QEMU from
# bookworm-backports) and 13 on x86_64 and aarch64; Debian unstable on
# loongarch64 (loong64 is a Debian-ports architecture, and ports carry only
# unstable); Ubuntu 24.04 everything but QEMU (it ships 8.2, lodger needs
# >= 10) and the Debian-only nested-kvm and la-pvhost.
# Prints one line per check and ends `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# os_release NAME ID CODENAME PRETTY: a sample /etc/os-release.
os_release() {
    mkdir -p "$work/$1"
    printf 'PRETTY_NAME="%s"\nID=%s\nVERSION_CODENAME=%s\n' "$4" "$2" "$3" >"$work/$1/os-release"
}

# apt_deb822 NAME SUITES [KEY]: an apt directory with one deb822 source.
apt_deb822() {
    mkdir -p "$work/$1/apt/sources.list.d"
    {
        printf 'Types: deb\nURIs: http://mirror.example/debian\nSuites: %s\nComponents: main\n' "$2"
        if [[ -n ${3:-} ]]; then printf 'Signed-By: %s\n' "$3"; fi
    } >"$work/$1/apt/sources.list.d/debian.sources"
}

# plan_of NAME ARCH WHAT...: runs the plan; its stdout, then `rc=N`.
plan_of() {
    local name=$1 arch=$2
    shift 2
    local rc=0 out
    out=$(LODGER_OS_RELEASE="$work/$name/os-release" LODGER_APT_DIR="$work/$name/apt" \
        LODGER_HOST_ARCH=$arch ./run.sh plan "$@" 2>/dev/null) || rc=$?
    printf '%s\nrc=%s\n' "$out" "$rc"
}

# check DESCRIPTION OUTPUT [+LINE | -LINE]...: OUTPUT has every +LINE (a
# whole line) and no -LINE (a substring).
check() {
    local what=$1 out=$2 bad=()
    shift 2
    local want
    for want in "$@"; do
        case $want in
        +*) grep -qxF -- "${want#+}" <<<"$out" || bad+=("missing: ${want#+}") ;;
        -*) ! grep -qF -- "${want#-}" <<<"$out" || bad+=("unexpected: ${want#-}") ;;
        esac
    done
    if [[ ${#bad[@]} -eq 0 ]]; then
        echo "check $what ... ok"
        passed=$((passed + 1))
    else
        echo "check $what ... FAILED"
        printf '    %s\n' "${bad[@]}"
        printf '    | %s\n' "${out//$'\n'/$'\n'    | }"
        failed=$((failed + 1))
    fi
}

readonly APT='env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends'
readonly BPO="$APT -t bookworm-backports"

# Debian 12, deb822 sources, no backports yet.
os_release d12 debian bookworm 'Debian GNU/Linux 12 (bookworm)'
apt_deb822 d12 'bookworm bookworm-updates' /usr/share/keyrings/debian-archive-keyring.gpg
out=$(plan_of d12 x86_64)
check "debian-12-x86_64" "$out" \
    "+tee $work/d12/apt/sources.list.d/lodger-backports.sources >/dev/null <<'EOF'" \
    "+URIs: http://mirror.example/debian" "+Suites: bookworm-backports" \
    "+Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
    "+$BPO qemu-system-arm" "+$BPO qemu-system-misc" \
    "+dpkg --add-architecture arm64" "+$APT cpio binutils-aarch64-linux-gnu" \
    "+$BPO meson python3-pycotap" "+$BPO libvirt-clients" "+rc=0" "-# cannot"
# The backports source is added once, though four steps need it.
check "debian-12-one-backports-source" "sources=$(grep -c '^Suites: bookworm-backports$' <<<"$out")" "+sources=1"
check "debian-12-plan-wrote-nothing" "$(ls "$work/d12/apt/sources.list.d")" "+debian.sources" "-lodger"

out=$(plan_of d12 aarch64 aarch64 nested-kvm)
check "debian-12-aarch64" "$out" "+$BPO qemu-system-arm" "+apt-get -q update" \
    "+$APT cpio binutils-aarch64-linux-gnu" "-add-architecture" "+rc=0"

# Debian 12, one-line sources.list with backports already enabled.
os_release d12b debian bookworm 'Debian GNU/Linux 12 (bookworm)'
mkdir -p "$work/d12b/apt/sources.list.d"
printf '%s\n' 'deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main' \
    'deb http://mirror.example/debian bookworm-backports main' >"$work/d12b/apt/sources.list"
check "debian-12-backports-enabled" "$(plan_of d12b x86_64 aarch64)" \
    "+$BPO qemu-system-arm" "-tee " "-apt-get -q update" "+rc=0"

# Debian 12 without a bookworm source to reuse: says so.
os_release d12c debian bookworm 'Debian GNU/Linux 12 (bookworm)'
mkdir -p "$work/d12c/apt"
msg=$(LODGER_OS_RELEASE="$work/d12c/os-release" LODGER_APT_DIR="$work/d12c/apt" \
    ./run.sh plan aarch64 2>&1 || echo "rc=$?")
check "debian-12-no-mirror" "$msg" "+rc=1" \
    "+run.sh: found no apt source for 'bookworm' to reuse for bookworm-backports; add bookworm-backports to your apt sources and re-run"

# Debian 13: QEMU 10 from trixie itself; no backports anywhere.
os_release d13 debian trixie 'Debian GNU/Linux 13 (trixie)'
apt_deb822 d13 'trixie trixie-updates'
for arch in x86_64 aarch64; do
    out=$(plan_of d13 $arch aarch64 loongarch64 nested-kvm libvirt)
    want=("+apt-get -q update" "+$APT qemu-system-arm" "+$APT qemu-system-misc"
        "+$APT cpio binutils-aarch64-linux-gnu" "+$APT libvirt-clients" "-bookworm" "+rc=0")
    if [[ $arch == x86_64 ]]; then
        want+=("+dpkg --add-architecture arm64")
    else
        want+=("-add-architecture")
    fi
    check "debian-13-$arch" "$out" "${want[@]}"
    check "debian-13-$arch-la-pvhost" "$(plan_of d13 $arch la-pvhost)" "+rc=1" \
        "+# cannot: --arch loongarch64 --host pvhost builds QEMU from bookworm-backports' source: Debian 12 only, not Debian GNU/Linux 13 (trixie) on $arch"
done

# Debian unstable on loongarch64 (Debian-ports): QEMU from unstable itself;
# no arm64 packages there, so no nested KVM.
os_release sid debian forky 'Debian GNU/Linux forky/sid'
apt_deb822 sid 'sid'
check "debian-sid-loongarch64" "$(plan_of sid loongarch64 aarch64 loongarch64 libvirt)" \
    "+$APT qemu-system-arm" "+$APT qemu-system-misc" "+$APT libvirt-clients" "+rc=0"
check "debian-sid-loongarch64-nested-kvm" "$(plan_of sid loongarch64 nested-kvm)" "+rc=1" \
    "+# cannot: --host nested-kvm needs Debian's arm64 packages, which Debian GNU/Linux forky/sid on loongarch64 cannot fetch (Debian-ports has no arm64)"

# Ubuntu 24.04: QEMU 8.2 only, so QEMU is the user's to install; the rest
# comes from noble, except what is built from Debian packages.
os_release u2404 ubuntu noble 'Ubuntu 24.04.1 LTS'
mkdir -p "$work/u2404/apt"
for arch in x86_64 aarch64; do
    out=$(plan_of u2404 $arch)
    check "ubuntu-24.04-$arch" "$out" "+rc=1" \
        "+# cannot: Ubuntu 24.04 ships QEMU 8.2: please install QEMU >= 10 with qemu-system-aarch64 (Debian package qemu-system-arm) yourself, then re-run" \
        "+# cannot: --host nested-kvm builds its L1 from Debian's arm64 packages: not on Ubuntu 24.04.1 LTS on $arch" \
        "+apt-get -q update" "+$APT libvirt-clients" "--t bookworm-backports" "-add-architecture"
done

# Not root and no sudo (simulated: the steps are collected, not run): one
# message with every command, exit 1.
msg=$(
    # shellcheck source=../run.sh
    LODGER_OS_RELEASE="$work/d12b/os-release" LODGER_APT_DIR="$work/d12b/apt" source ./run.sh
    COLLECT=1
    ensure_qemu qemu-system-lodger-missing qemu-system-arm 2>/dev/null
    finish_collected 2>&1
) || msg+=$'\n'"rc=$?"
check "not-root" "$msg" "+run.sh: not root and no sudo: as root, run" "+$BPO qemu-system-arm" \
    "+run.sh: then re-run" "+rc=1"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
