"""lab-report: many run directories to tables (md, tex, csv) and figures."""

from lab.report.cli import main, write_report

__all__ = ["main", "write_report"]
