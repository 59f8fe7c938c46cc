# benches/common.sh — sourced by the benchmark scripts that take the common
# options: --size, --reps, --dir and --livemirror PATH (else the release
# binary is built). Set SIZE, REPS and DIR to the script's defaults first;
# after `bench_options "$@"`, LM names the livemirror binary to run.

HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
REPO=$(dirname "$HERE")
LM=""

bench_options() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --size) SIZE=$2; shift 2 ;;
            --reps) REPS=$2; shift 2 ;;
            --dir) DIR=$2; shift 2 ;;
            --livemirror) LM=$2; shift 2 ;;
            *) echo "unknown argument $1" >&2; exit 2 ;;
        esac
    done
    if [ -z "$LM" ]; then
        (cd "$REPO" && cargo build --release -q -p livemirror >&2)
        LM=${CARGO_TARGET_DIR:-$REPO/target}/release/livemirror
    fi
}
