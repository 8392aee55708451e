// The Partitions core. See README.md, section Architecture.
