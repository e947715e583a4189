"""Reports: self-contained HTML pages of bench runs (``reports.bench.render_report``)."""
