"""JupyterHub integration: StudySpawner, roles and groups from the policy, authentication with
login records, the symlink-safe contents manager and the demo launcher (docs/hub.md)."""
