#!/usr/bin/env bash
# SVG charts of ringcast-bench results with gnuplot (Debian: gnuplot-nox).
#
#   bench/plot.sh cdf OUT.svg TITLE LABEL=HIST.csv ...
#       latency CDF, one line per system, from ringcast-bench --hist-out
#       files (value_ns,count,cumulative lines); log-scale microseconds
#   bench/plot.sh sweep OUT.svg TITLE LABEL=SWEEP.csv ...
#       achieved msgs/s against offered msgs/s, from ringcast-bench --sweep
#       --csv files (the open-loop steps), with the diagonal "keeps up"
#   bench/plot.sh sweep-latency OUT.svg TITLE LABEL=SWEEP.csv ...
#       p50 (dashed) and p99 (solid) latency against offered msgs/s
#   bench/plot.sh soak OUT.svg TITLE SOAK.csv
#       server RSS (MB) and open descriptors against time, from a
#       ringcast-soak --csv file (bench/soak.sh)
#   bench/plot.sh soak-load OUT.svg TITLE SOAK.csv
#       deliveries/s and msgs/s, and the p99 and max delivery latency of each
#       sample period, against time, from the same file
#   bench/plot.sh scale OUT.svg TITLE SCALE.csv [UP_S DOWN_S]
#       the autoscaler under a step load (bench/scale.sh): shard count and
#       the fullest queue; msgs/s offered, jobs/s and deliveries/s; p50, p99
#       and max latency of each second's messages; against seconds since the
#       load began, the steps marked at UP_S and DOWN_S
#   bench/plot.sh dir DIR
#       the first three for the files DIR/WORKLOAD.SYSTEM.hist.csv and
#       DIR/WORKLOAD.SYSTEM.sweep.csv (what compare.sh --charts leaves there):
#       DIR/WORKLOAD-latency-cdf.svg, DIR/WORKLOAD-sweep-throughput.svg,
#       DIR/WORKLOAD-sweep-latency.svg
#
# PLOT_TERMINAL overrides the gnuplot terminal (default svg), e.g.
# PLOT_TERMINAL="pngcairo size 960,600" for PNG files (name them .png).
#
# Example:
#   build/ringcast-bench --system nats --port 4222 --rate 50000 --hist-out /tmp/nats.hist.csv
#   build/ringcast-bench --port 7400 --rate 50000 --hist-out /tmp/ringcast.hist.csv
#   bench/plot.sh cdf /tmp/latency.svg "fanout at 50k msgs/s" nats=/tmp/nats.hist.csv ringcast=/tmp/ringcast.hist.csv
set -u -o pipefail

die() { echo "plot.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

command -v gnuplot >/dev/null || die "gnuplot is not installed (apt-get install gnuplot-nox)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-plot.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT

# PLOT_TERMINAL overrides the gnuplot terminal, e.g. "pngcairo size 960,600"
# (then name the output .png).
TERM_SVG="set terminal ${PLOT_TERMINAL:-svg size 960,600 dynamic enhanced font 'sans,12' background '#ffffff'}"

# gnuplot string literal of $1 (single quotes doubled)
gq() { printf "'%s'" "${1//\'/\'\'}"; }

# Column of CSV header name $2 in file $1 (1-based), or empty.
csv_col() { head -n 1 "$1" | tr ',' '\n' | grep -nx "$2" | cut -d: -f1; }

# cdf OUT TITLE LABEL=FILE...
plot_cdf() {
  local out=$1 title=$2 i=0 plots="" spec label file
  shift 2
  for spec in "$@"; do
    label=${spec%%=*}; file=${spec#*=}
    [ -s "$file" ] || { echo "plot.sh: $file is empty or missing, skipped" >&2; continue; }
    # value_ns,count,cumulative -> microseconds, cumulative fraction
    awk -F, '!/^#/ && NF >= 3 { v[NR] = $1; c[NR] = $3; if ($3 > tot) tot = $3 }
             END { if (tot > 0) for (n in v) printf "%.3f %.9f\n", v[n] / 1000, c[n] / tot }' "$file" |
      sort -g >"$tmp/cdf$i.dat"
    [ -s "$tmp/cdf$i.dat" ] || continue
    plots+="${plots:+, }'$tmp/cdf$i.dat' using 1:2 with steps lw 2 title $(gq "$label")"
    i=$((i + 1))
  done
  [ -n "$plots" ] || { echo "plot.sh: nothing to plot for $out" >&2; return 1; }
  gnuplot <<EOF || return 1
$TERM_SVG
set output $(gq "$out")
set title $(gq "$title")
set xlabel 'send-to-deliver latency (µs, log scale)'
set ylabel 'fraction of deliveries at or below'
set logscale x
set format x '10^{%L}'
set yrange [0:1.02]
set ytics 0.1
set grid xtics mxtics ytics
set key top left
plot $plots
EOF
  echo "plot.sh: wrote $out" >&2
}

# Extracts "offered <col>" from the open-loop rows of a sweep CSV into $3.
sweep_data() { # FILE COLUMN OUT
  local f=$1 want=$2 out=$3 co cl cy
  co=$(csv_col "$f" offered_msgs_per_s); cl=$(csv_col "$f" loop); cy=$(csv_col "$f" "$want")
  if [ -z "$co" ] || [ -z "$cl" ] || [ -z "$cy" ]; then
    echo "plot.sh: $f is not a ringcast-bench --csv file" >&2
    return 1
  fi
  awk -F, -v co="$co" -v cl="$cl" -v cy="$cy" 'NR > 1 && $cl == "open" { print $co, $cy }' "$f" | sort -g >"$out"
  [ -s "$out" ]
}

# sweep OUT TITLE LABEL=FILE...
plot_sweep() {
  local out=$1 title=$2 i=0 plots="" spec label file maxx=0
  shift 2
  for spec in "$@"; do
    label=${spec%%=*}; file=${spec#*=}
    [ -s "$file" ] || continue
    sweep_data "$file" msgs_per_s "$tmp/sw$i.dat" || continue
    plots+="${plots:+, }'$tmp/sw$i.dat' using 1:2 with linespoints lw 2 pt 7 title $(gq "$label")"
    maxx=$(awk -v m="$maxx" '{ if ($1 > m) m = $1 } END { print m }' "$tmp/sw$i.dat")
    i=$((i + 1))
  done
  [ -n "$plots" ] || { echo "plot.sh: nothing to plot for $out" >&2; return 1; }
  gnuplot <<EOF || return 1
$TERM_SVG
set output $(gq "$out")
set title $(gq "$title")
set xlabel 'offered load (messages/s)'
set ylabel 'achieved (messages/s sent in the window)'
set grid
set key top left
set xrange [0:*]
set yrange [0:*]
set format x '%.0s%c'
set format y '%.0s%c'
plot x with lines dt 3 lc rgb '#888888' title 'keeps up', $plots
EOF
  echo "plot.sh: wrote $out" >&2
}

# sweep-latency OUT TITLE LABEL=FILE...
plot_sweep_latency() {
  local out=$1 title=$2 i=0 plots="" spec label file
  shift 2
  for spec in "$@"; do
    label=${spec%%=*}; file=${spec#*=}
    [ -s "$file" ] || continue
    sweep_data "$file" lat_p99_us "$tmp/p99_$i.dat" || continue
    sweep_data "$file" lat_p50_us "$tmp/p50_$i.dat" || continue
    plots+="${plots:+, }'$tmp/p99_$i.dat' using 1:(\$2 > 0 ? \$2 : 1/0) with linespoints lw 2 pt 7 lc $((i + 1)) title $(gq "$label p99")"
    plots+=", '$tmp/p50_$i.dat' using 1:(\$2 > 0 ? \$2 : 1/0) with linespoints lw 1 dt 2 pt 6 lc $((i + 1)) title $(gq "$label p50")"
    i=$((i + 1))
  done
  [ -n "$plots" ] || { echo "plot.sh: nothing to plot for $out" >&2; return 1; }
  gnuplot <<EOF || return 1
$TERM_SVG
set output $(gq "$out")
set title $(gq "$title")
set xlabel 'offered load (messages/s)'
set ylabel 'latency (µs, log scale)'
set logscale y
set format y '10^{%L}'
set format x '%.0s%c'
set grid
set key top left
set xrange [0:*]
plot $plots
EOF
  echo "plot.sh: wrote $out" >&2
}

# Extracts "minutes <col>..." from a ringcast-soak CSV into $2; $3... are column names.
soak_data() { # FILE OUT COL...
  local f=$1 out=$2 cols="" c n
  shift 2
  for n in "$@"; do
    c=$(csv_col "$f" "$n")
    [ -n "$c" ] || { echo "plot.sh: $f has no column $n (not a ringcast-soak --csv file?)" >&2; return 1; }
    cols+="${cols:+ }$c"
  done
  awk -F, -v cols="$cols" 'NR > 1 { n = split(cols, c, " "); printf "%.3f", $1 / 60; for (i = 1; i <= n; i++) printf " %s", $c[i]; print "" }' "$f" >"$out"
  [ -s "$out" ]
}

# gnuplot commands marking where the load of ringcast-soak CSV $1 ended (its
# last "load" row), if the file has a phase column and rows after the load.
soak_load_end() {
  local c
  c=$(csv_col "$1" phase)
  [ -n "$c" ] || return 0
  awk -F, -v c="$c" 'NR > 1 { if ($c == "load") t = $1; else after = 1 }
    END { if (after && t > 0) printf "set arrow from %.3f, graph 0 to %.3f, graph 1 nohead dt 3 lc rgb \"#444444\"\nset label \"load ends\" at %.3f, graph 0.95 right offset -0.5, 0\n", t / 60, t / 60, t / 60 }' "$1"
}

# soak OUT TITLE FILE
plot_soak() {
  local out=$1 title=$2 file=$3 broker=""
  soak_data "$file" "$tmp/soak.dat" rss_kb fds broker_rss_kb || return 1
  awk '$4 > 0 { found = 1 } END { exit !found }' "$tmp/soak.dat" &&
    broker=", '$tmp/soak.dat' using 1:(\$4 / 1024) axes x1y1 with lines lw 1 dt 3 lc rgb '#888888' title 'dead-letter broker RSS (MB)'"
  gnuplot <<EOF || return 1
$TERM_SVG
set output $(gq "$out")
set title $(gq "$title")
set xlabel 'time (minutes)'
set ylabel 'RSS (MB)'
set y2label 'open file descriptors'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
set key below
$(soak_load_end "$file")
plot '$tmp/soak.dat' using 1:(\$2 / 1024) axes x1y1 with lines lw 2 title 'ringcastd RSS (MB)', \
     '$tmp/soak.dat' using 1:3 axes x1y2 with lines lw 2 dt 2 title 'ringcastd open fds'$broker
EOF
  echo "plot.sh: wrote $out" >&2
}

# soak-load OUT TITLE FILE
plot_soak_load() {
  local out=$1 title=$2 file=$3
  soak_data "$file" "$tmp/load.dat" deliveries_per_s msgs_per_s lat_p99_ms lat_max_ms || return 1
  gnuplot <<EOF || return 1
$TERM_SVG
set output $(gq "$out")
set title $(gq "$title")
set xlabel 'time (minutes)'
set ylabel 'per second'
set y2label 'delivery latency per sample (ms, log scale)'
set ytics nomirror
set y2tics
set logscale y2
set format y '%.0s%c'
set yrange [0:*]
set grid
set key below
$(soak_load_end "$file")
plot '$tmp/load.dat' using 1:2 axes x1y1 with lines lw 2 title 'deliveries/s (readers)', \
     '$tmp/load.dat' using 1:3 axes x1y1 with lines lw 2 title 'msgs/s sent', \
     '$tmp/load.dat' using 1:(\$4 > 0 ? \$4 : 1/0) axes x1y2 with lines lw 1 title 'p99 latency (ms)', \
     '$tmp/load.dat' using 1:(\$5 > 0 ? \$5 : 1/0) axes x1y2 with points pt 7 ps 0.3 title 'max latency (ms)'
EOF
  echo "plot.sh: wrote $out" >&2
}

# scale OUT TITLE FILE [UP DOWN]
plot_scale() {
  local out=$1 title=$2 file=$3 up=${4:-} down=${5:-} cols="" c n marks=""
  for n in t_s shards fill_pct sent_per_s jobs_per_s deliveries_per_s lat_p50_ms lat_p99_ms lat_max_ms; do
    c=$(csv_col "$file" "$n")
    [ -n "$c" ] || { echo "plot.sh: $file has no column $n (not a bench/scale.sh scale.csv?)" >&2; return 1; }
    cols+="${cols:+ }$c"
  done
  # empty fields (no bench second for that sample) become NaN, which gnuplot skips
  awk -F, -v cols="$cols" 'NR > 1 { n = split(cols, c, " "); for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? " " : ""), ($c[i] == "" ? "NaN" : $c[i]); print "" }' \
    "$file" >"$tmp/scale.dat"
  [ -s "$tmp/scale.dat" ] || return 1
  for n in $up $down; do
    marks+="set arrow from $n, graph 0 to $n, graph 1 nohead dt 3 lw 1.5 lc rgb '#444444'"$'\n'
  done
  gnuplot <<EOF || return 1
${TERM_SVG/960,600/960,900}
set output $(gq "$out")
set multiplot layout 3,1 title $(gq "$title")
set grid
set key above horizontal
set lmargin 10
set rmargin 10
$marks
set ylabel 'shards'
set y2label 'fullest queue (%)'
set ytics 1 nomirror
set y2tics 20
set yrange [0:*]
set y2range [0:105]
plot '$tmp/scale.dat' using 1:2 axes x1y1 with steps lw 2 title 'shards', \
     '$tmp/scale.dat' using 1:3 axes x1y2 with lines lw 1 lc rgb '#d95f02' title 'fullest queue, % of admitted (80: high mark)'
set ytics autofreq
set y2tics autofreq
set ylabel 'per second'
set y2label 'deliveries/s'
set format y '%.0s%c'
set format y2 '%.0s%c'
set y2range [0:*]
plot '$tmp/scale.dat' using 1:4 axes x1y1 with lines lw 2 title 'msgs/s offered (by scheduled second)', \
     '$tmp/scale.dat' using 1:5 axes x1y1 with lines lw 2 title 'shard jobs/s', \
     '$tmp/scale.dat' using 1:6 axes x1y2 with lines lw 1 dt 2 title 'deliveries/s (server)'
unset y2label
unset y2tics
set ytics mirror
set format y '%g'
set logscale y
set yrange [*:*]
set ylabel 'latency (ms, log)'
set xlabel 'seconds since the load began'
plot '$tmp/scale.dat' using 1:(\$7 > 0 ? \$7 : 1/0) with lines lw 2 title 'p50', \
     '$tmp/scale.dat' using 1:(\$8 > 0 ? \$8 : 1/0) with lines lw 2 title 'p99', \
     '$tmp/scale.dat' using 1:(\$9 > 0 ? \$9 : 1/0) with points pt 7 ps 0.3 title 'max'
unset multiplot
EOF
  echo "plot.sh: wrote $out" >&2
}

# dir DIR
plot_dir() {
  local d=$1 w f specs rc=0
  [ -d "$d" ] || die "$d is not a directory"
  local workloads
  workloads=$(find "$d" -maxdepth 1 \( -name '*.hist.csv' -o -name '*.sweep.csv' \) -printf '%f\n' | cut -d. -f1 | sort -u)
  [ -n "$workloads" ] || die "no WORKLOAD.SYSTEM.hist.csv or .sweep.csv files in $d"
  for w in $workloads; do
    specs=()
    for f in "$d/$w".*.hist.csv; do
      [ -e "$f" ] || continue
      specs+=("$(basename "$f" .hist.csv | cut -d. -f2-)=$f")
    done
    [ ${#specs[@]} -gt 0 ] && { plot_cdf "$d/$w-latency-cdf.svg" "$w: latency CDF" "${specs[@]}" || rc=1; }
    specs=()
    for f in "$d/$w".*.sweep.csv; do
      [ -e "$f" ] || continue
      specs+=("$(basename "$f" .sweep.csv | cut -d. -f2-)=$f")
    done
    if [ ${#specs[@]} -gt 0 ]; then
      plot_sweep "$d/$w-sweep-throughput.svg" "$w: throughput against offered load" "${specs[@]}" || rc=1
      plot_sweep_latency "$d/$w-sweep-latency.svg" "$w: latency against offered load" "${specs[@]}" || rc=1
    fi
  done
  return $rc
}

[ $# -ge 1 ] || { usage >&2; exit 1; }
cmd=$1
shift
case "$cmd" in
  cdf) [ $# -ge 3 ] || die "cdf OUT.svg TITLE LABEL=FILE ..."; plot_cdf "$@" ;;
  sweep) [ $# -ge 3 ] || die "sweep OUT.svg TITLE LABEL=FILE ..."; plot_sweep "$@" ;;
  sweep-latency) [ $# -ge 3 ] || die "sweep-latency OUT.svg TITLE LABEL=FILE ..."; plot_sweep_latency "$@" ;;
  soak) [ $# -eq 3 ] || die "soak OUT.svg TITLE SOAK.csv"; plot_soak "$@" ;;
  soak-load) [ $# -eq 3 ] || die "soak-load OUT.svg TITLE SOAK.csv"; plot_soak_load "$@" ;;
  scale) [ $# -eq 3 ] || [ $# -eq 5 ] || die "scale OUT.svg TITLE SCALE.csv [UP_S DOWN_S]"; plot_scale "$@" ;;
  dir) [ $# -eq 1 ] || die "dir DIR"; plot_dir "$1" ;;
  -h|--help) usage ;;
  *) usage >&2; exit 1 ;;
esac
