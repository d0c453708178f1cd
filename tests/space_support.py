"""The small space the space and catalog tests share: its size and its build log."""

PATIENTS, SEED, CHUNK = 2_000, 7, 800
BUILD_LOG: list[str] = []  # progress lines printed while building the session space
