"""HTML run reports: curves, evaluation tables and replays of saved episodes (DESIGN 2, 4).

`build_report(run_dir)` writes `run_dir/report.html`; `vlmrl report RUN_DIR` does the same from
the command line. The package reads only files a run wrote and imports only the cores and
plotting libraries, never a method package: each method describes its episodes through
`info["replay"]` (see `vlmrl/report/README.md` for the schemas).
"""

from vlmrl.report.page import REPORT_NAME, build_report, report_summary

__all__ = ["REPORT_NAME", "build_report", "report_summary"]
