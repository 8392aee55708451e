// The NVS core. See README.md, section Architecture.
