"""Widgets and shared screen bases for the weightgate TUI. They read the App's reactive state
(report, workspace_error, devices, job_rows) and never touch files on the UI thread."""
