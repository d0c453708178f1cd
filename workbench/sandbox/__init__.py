"""The study kernel sandbox: launcher (bubblewrap + setpriv), audit proxy, provisioner, strict
kernelspec manager and the websocket attribution hook. See docs/sandbox.md."""
