// The FlashEncryption core. See README.md, section Architecture.
