"""Reports: session plots and telemetry export."""
