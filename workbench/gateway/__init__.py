"""The data gateway: one Unix socket per study, serving only the views the study is granted."""
