"""Reports: self-contained HTML pages of bench runs (``reports.html.render_report``)."""
