"""trtq.report: the build/compare report (report.json against report.schema.json, report.md) and its plots.

It takes the results of the layers below (calibration tables, comparison results, gates) as data;
the plots take plain data and return the paths they wrote, the report records them.

    report = Report(command="compare")
    report.set_comparison(result)
    write_report(report, "out/")
"""

from trtq.report.report import Report, write_report

__all__ = ["Report", "write_report"]
