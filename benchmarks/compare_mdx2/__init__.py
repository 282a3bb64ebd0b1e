"""Benchmark ``dials_mdxbg`` against mdx2 on a synthetic Pilatus background sweep.

For each number of frames (and the detector layout given by ``--modules``) a synthetic
sweep is written once into the work directory (and reused while its ``spec.json``
matches) and imported with ``dials.import`` (:mod:`.cases`). Then, for each ``--nproc``
value and ``--repeats`` times, these whole commands are timed, each in its own fresh
directory (:mod:`.run`, :mod:`.commands`):

* import: ``mdx2.import_data`` vs ``dials.mdx_import``;
* bin from image series: ``mdx2.bin_image_series`` on mdx2's image series vs
  ``dials.mdx_bin_background`` on ours;
* one step vs two steps: mdx2's import + binning (times summed, peak memory = max of
  the two, output sizes summed) vs ``dials.mdx_bin_background background.expt``.

Measured per run (:mod:`.timing`): wall time (``time.perf_counter`` around the
subprocess), peak resident memory of the process tree (the sum of ``VmRSS`` of the
process and all its descendants, sampled from ``/proc`` every ``--sample-interval``
seconds; the kernel's ``ru_maxrss`` of the largest single process and the CPU time are
kept in the JSON too) and the total size of all files the command wrote (for mdx2's
import including ``datastore/``).

Before anything is reported the outputs are checked (:mod:`.checks`): mdx2's and our
image series ``data`` must be identical, and the binned ``signal`` of mdx2, our
two-step and our one-step paths equal (``rtol=1e-12``, identical NaN positions) on
identical axes. Any difference is printed and the script exits with status 1. The
tables and JSON are :mod:`.report`'s.

Example:
    Activate the environment (``source scripts/bootstrap.sh --test``), then, from the
    repository root::

        python -m benchmarks.compare_mdx2 --frames 50 --modules 5 12 --nproc 1 2 \\
            --repeats 1 --workdir bench --json bench/results.json \\
            --markdown bench/results.md

    (``python benchmarks/compare_mdx2`` is the same.) ``--frames 50 200`` runs
    everything for both sizes and adds the linearity ratios ``time(200)/time(50)``;
    ``--skip-mdx2`` times only our commands.
"""
