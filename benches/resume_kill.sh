#!/usr/bin/env bash
# benches/resume_kill.sh — the kill tests of app/tests/resume.rs at many
# points: `clone` and `serve --mirror-to` (under qemu-io writes) killed
# with SIGKILL once their PROGRESS events report k/(N+1) of the image
# copied, k = 1..N, rerun, judged by qemu-img compare, the bytes copied
# again bounded (see the test). CI runs 10 points; this runs N (default 100).
#
# Usage: benches/resume_kill.sh [N]
# Requirements: cargo, qemu-utils (qemu-img, qemu-io).

set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
LIVEMIRROR_KILL_POINTS=${1:-100} cargo test -p livemirror --test resume -- \
    --nocapture --test-threads 1 a_killed
