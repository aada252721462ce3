"""The receiver service and everything it writes. Installs and runs without the GPL hosts."""
