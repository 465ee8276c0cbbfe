#!/usr/bin/env bash
# Log append/read benchmark beside this machine's sequential write bandwidth with fsync.
#
# Measures sequential writes with fdatasync after each in the bench directory with fio, in
# 1 MiB, 16 KiB and 256 KiB blocks (256 KiB: the most 16 writers of 16 KiB batches can have in
# one fsync) (installed with apt-get if missing; dd oflag=dsync if that fails),
# then runs `cargo bench -p runnel-log --bench append` with those figures in
# RUNNEL_BENCH_DISK_MBPS and RUNNEL_BENCH_DISK_16K_MBPS: the table shows each case's ratio to
# fio's 1 MiB figure, and to the bare disk measured again right after the case (1 MiB writes,
# and the case's own write pattern), since this disk's speed drifts. MB = 10^6 bytes.
#
# Environment: RUNNEL_BENCH_BYTES (bytes per case, default 512M), RUNNEL_BENCH_DIR (default
# target/bench-data; must be a real disk, not tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${RUNNEL_BENCH_DIR:-$PWD/target/bench-data}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
export RUNNEL_BENCH_DIR="$dir"
bytes="${RUNNEL_BENCH_BYTES:-512M}"
export RUNNEL_BENCH_BYTES="$bytes"
fstype="$(df --output=fstype "$dir" | tail -1 | tr -d ' ')"
echo "== bench dir $dir ($fstype)"
if [ "$fstype" = tmpfs ]; then
    echo "error: $dir is on tmpfs; set RUNNEL_BENCH_DIR to a directory on a real disk" >&2
    exit 1
fi

if ! command -v fio >/dev/null 2>&1; then
    echo "== installing fio"
    sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq fio; } \
        >/dev/null 2>&1 || echo "   (could not install fio; falling back to dd)"
fi

# fio_mbps <block size>: MB/s of sequential writes of that size, each followed by fdatasync.
fio_mbps() {
    local json
    json="$(fio --name=seqwrite --rw=write --bs="$1" --size="$bytes" --fdatasync=1 --directory="$dir" \
        --output-format=json)"
    rm -f "$dir"/seqwrite.*
    printf '%s' "$json" | python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"][0]["write"]
print("%.1f" % (job["bw_bytes"] / 1e6))'
}

# dd_mbps <block size> <count>: the same with dd oflag=dsync.
dd_mbps() {
    local out
    out="$(LC_ALL=C dd if=/dev/zero of="$dir/dd-seqwrite" bs="$1" count="$2" oflag=dsync 2>&1 | tail -1)"
    rm -f "$dir/dd-seqwrite"
    echo "   $out" >&2
    # "N bytes (...) copied, S s, R MB/s": recompute from bytes and seconds.
    printf '%s' "$out" | python3 -c '
import re, sys
line = sys.stdin.read()
b = int(line.split()[0]); s = float(re.search(r"copied, ([0-9.]+) s", line).group(1))
print(f"{b / s / 1e6:.1f}")'
}

disk_mbps=""
disk16_mbps=""
if command -v fio >/dev/null 2>&1; then
    echo "== fio --name=seqwrite --rw=write --bs=1M --size=$bytes --fdatasync=1"
    disk_mbps="$(fio_mbps 1M)"
    echo "   fio bs=1M: $disk_mbps MB/s"
    echo "== fio --name=seqwrite --rw=write --bs=16k --size=$bytes --fdatasync=1"
    disk16_mbps="$(fio_mbps 16k)"
    echo "   fio bs=16k: $disk16_mbps MB/s"
    # 16 writers of 16 KiB batches, each waiting for its fsync, put at most 16 x 16 KiB =
    # 256 KiB into one fsync: this is the ceiling of that case on this disk, however well
    # the fsyncs are shared.
    echo "== fio --name=seqwrite --rw=write --bs=256k --size=$bytes --fdatasync=1"
    disk256_mbps="$(fio_mbps 256k)"
    echo "   fio bs=256k: $disk256_mbps MB/s (the ceiling of 16 writers x 16 KiB batches:" \
        "$(python3 -c "print(f'{100 * $disk256_mbps / $disk_mbps:.0f}')")% of fio bs=1M)"
else
    mib=$(( $(numfmt --from=iec "$bytes") >> 20 ))
    echo "== dd if=/dev/zero bs=1M count=$mib oflag=dsync"
    disk_mbps="$(dd_mbps 1M "$mib")"
    echo "   dd bs=1M: $disk_mbps MB/s"
    echo "== dd if=/dev/zero bs=16k count=$(( mib * 64 )) oflag=dsync"
    disk16_mbps="$(dd_mbps 16k $(( mib * 64 )))"
    echo "   dd bs=16k: $disk16_mbps MB/s"
fi

echo "== cargo bench -p runnel-log --bench append"
RUNNEL_BENCH_DISK_MBPS="$disk_mbps" RUNNEL_BENCH_DISK_16K_MBPS="$disk16_mbps" cargo bench -p runnel-log --bench append
