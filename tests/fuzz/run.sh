#!/usr/bin/env bash
# Runs the libFuzzer targets (tests/fuzz/README.md): each one first replays
# its seed corpus and regression inputs, then fuzzes for a bounded time.
# New inputs worth keeping go to BUILD_DIR/fuzz/TARGET/corpus, crashes to
# BUILD_DIR/fuzz/TARGET/artifacts; the checked-in corpus is only read.
#
#   tests/fuzz/run.sh [--time SECONDS | --long] [--build-dir DIR] [TARGET...]
#
# TARGET is codec, session, config, http, json, ws or token (default: all seven, one
# after the other). --time defaults to 60 seconds each (what CI runs), --long is
# an hour each. Exits non-zero at the first target that finds a crash.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/build-fuzz"
seconds=60
all=(codec session config http json ws token)
targets=()

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --time) seconds=$2; shift ;;
    --long) seconds=3600 ;;
    --build-dir) build=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
build=$(cd "$build" && pwd)

for t in "${targets[@]}"; do
  case " ${all[*]} " in
    *" $t "*) ;;
    *) echo "run.sh: unknown target $t (one of: ${all[*]})" >&2; exit 2 ;;
  esac
done

for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is not built; build it with:" >&2
    echo "  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DRC_FUZZ=ON -DRC_WERROR=ON && cmake --build build-fuzz --target fuzz -j2" >&2
    exit 2
  fi
  case "$t" in
    codec|session) dict="$here/proto.dict" ;; # both read MessagePack frames
    *) dict="$here/$t.dict" ;;
  esac
  work="$build/fuzz/$t"
  mkdir -p "$work/corpus" "$work/artifacts"
  dirs=("$work/corpus" "$here/corpus/$t")
  [ "$t" = json ] && dirs+=("$here/corpus/codec") # json also reads each input as a server frame
  [ -d "$here/regress/$t" ] && dirs+=("$here/regress/$t")
  echo "run.sh: fuzz_$t for ${seconds}s over ${dirs[*]}"
  if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -dict="$dict" -artifact_prefix="$work/artifacts/" "${dirs[@]}"; then
    echo "run.sh: fuzz_$t FAILED; the input is in $work/artifacts/ (reproduce: $bin FILE)." >&2
    echo "run.sh: once fixed, add it to tests/fuzz/regress/$t/ and as a unit test in tests/unit/." >&2
    exit 1
  fi
  echo "run.sh: fuzz_$t passed"
done
