"""A failing Slurm test shows the daemons' logs and the end of the Slurm run's Snakemake log."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    runs = getattr(item, "funcargs", {}).get("runs")
    if report.when == "call" and report.failed and runs is not None:
        report.sections.append(("slurmctld and slurmd logs", runs.daemon_logs))
        report.sections.append(("Snakemake through Slurm, last lines", runs.slurm_log[-6000:]))
