#!/bin/bash
# Wall and process CPU (user + sys, /usr/bin/time) of the one step and the import, nproc 1,
# alternating two source trees run by one venv's python; no picture or report.
#
#   benchmarks/ab_cpu.sh <background.expt> <repeats> <before tree> <after tree> <workdir>
#   e.g. benchmarks/ab_cpu.sh bench/eiger16m_f40/background.expt 3 /work/main . /tmp/abcpu
set -eu
EXPT=$(realpath "$1"); REPS=$2; BEFORE=$(realpath "$3"); AFTER=$(realpath "$4"); W=$5
PY=${PYTHON:-$BEFORE/.venv/bin/python}
mkdir -p "$W"
for _ in $(seq "$REPS"); do
  for who in before after; do
    if [ $who = before ]; then SRC=$BEFORE/src; else SRC=$AFTER/src; fi
    for step in one_step import; do
      rm -rf "${W:?}/$who"; mkdir -p "$W/$who"
      if [ $step = one_step ]; then
        ep=mdx_bin_background
        args=("$EXPT" bins=10,20,20 valid_range=0,200 mp.nproc=1 output.plot=None output.html=None)
      else
        ep=mdx_import
        args=("$EXPT" output.data=X.nxs mp.nproc=1)
      fi
      (cd "$W/$who" && PYTHONPATH=$SRC /usr/bin/time -f "$who $step %e %U %S %M" -o "$W/t.txt" \
        "$PY" -c "from dials_mdxbg.command_line.entry import $ep as m; m()" "${args[@]}" \
        > /dev/null 2>&1)
      awk '{printf "%s %s wall %.2f cpu %.2f peak_mb %d\n", $1, $2, $3, $4 + $5, $6 / 1024}' \
        "$W/t.txt"
    done
  done
done
