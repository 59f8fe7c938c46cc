#!/usr/bin/env bash
# The README's test command: installs the tools the tests judge by when they
# are missing (Debian packages; run as root, or with sudo available), then
# runs the whole test suite. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools nobody here wrote, that the tests use as judges and peers.
packages=(
    qemu-utils             # qemu-img, qemu-io, qemu-nbd, qemu-storage-daemon
    libnbd-bin             # nbdinfo, nbdcopy
    nbdkit
    e2fsprogs util-linux mount   # fsck.ext4, debugfs, resize2fs, losetup
    xfsprogs btrfs-progs   # reflink copies between files of one filesystem
    gdisk fdisk            # sgdisk -v, sfdisk --verify (partition tables)
    clang libbpf-dev       # build the kernel write tracker's BPF program
    xz-utils zstd gzip bzip2 zip   # compressed image test inputs
    gnutls-bin             # certtool: certificates for the NBD TLS tests
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}" >&2
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The kernel tracker is part of what is tested: never build it away here.
export LIVEMIRROR_REQUIRE_BPF=1
cargo test --workspace "$@"

# The installers and the Windows .exe take minutes to build, so their tests
# are #[ignore]d in a plain run; .ci/run builds them, names them in these
# variables, and they are tested here. Under CI they must all be there.
artifacts=(LIVEMIRROR_DEB LIVEMIRROR_MSI LIVEMIRROR_WINDOWS_EXE)
have=0
for v in "${artifacts[@]}"; do [[ -n ${!v:-} ]] && have=$((have + 1)); done
if ((have > 0)) || [[ ${CI:-} == true ]]; then
    cargo test -p livemirror-tests --test packaging --test windows -- --ignored
else
    echo "test.sh: the installer and Windows tests did not run (ignored): .ci/run builds what they need" >&2
fi
