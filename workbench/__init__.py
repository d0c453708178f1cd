"""workbench: secure research workbench for a healthcare trusted data space."""
