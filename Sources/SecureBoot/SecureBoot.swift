// The SecureBoot core. See README.md, section Architecture.
