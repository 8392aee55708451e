// The ImageFormat core. See README.md, section Architecture.
