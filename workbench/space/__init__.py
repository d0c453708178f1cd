"""Building a data space: ``workbench init``, keyed pseudonyms and the space's own keys."""
