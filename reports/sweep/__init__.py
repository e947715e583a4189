"""One self-contained HTML page for a sweep (ablation): ``render_sweep_report(sweep_dir) -> Path``.

Reads the sweep engine's layout (``harness.sweep``, see ``cells``) and writes ``<sweep_dir>/report.html`` (images
embedded as base64, no external resources) plus ``<sweep_dir>/exports/``: every table as .tex and .md, every
figure as .pdf, .svg and .png at paper widths.

Page: the ablation table (one row per configuration, swept keys as columns, metrics as mean +- CI with the
best in bold and arrows, across seeds with per-seed values when the sweep has ``seeds``; methods with identical
results in every cell, e.g. a bicubic baseline, are shown once in a "Baselines" table instead), "Component on
vs off" (each SCA / HCC toggle against its off configuration: paired tests per seed over images and across
seeds over per-seed means, Holm over the table, verdicts), a curve per numeric swept key (CI bands, per-seed
dots), per-image distributions, the models next to their tokenizer ceiling and bicubic with the warnings
(``reports.honesty``), attention-distance and error-accumulation figures and SCA gate panels when cells saved
analysis outputs (``analyze`` stage), and the cells that failed or have not finished.

Modules, in reading order::

    cells.py        SweepCell, load_sweep_cells: state.json / summary.csv / analysis CSVs of each cell
    keys.py         swept, varying and numeric keys; short names, cell labels, value formatting
    seeds.py        the replicate axis: configurations over their seeds, t-interval across seeds
    tables.py       ablation_frame, baseline_frame, constant_methods, auto_precision
    comparison.py   comparison_frame: SCA / HCC on vs off, per seed and across seeds (harness.core.stats)
    curves.py       lambda_frame, seed_points, distribution_frame, analysis_frame, identical_curves: the data
                    behind the figures
    sections.py     the page's sections, each table and figure also exported (Exporter)
    report.py       render_sweep_report
"""
