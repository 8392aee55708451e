import ArgumentParser

struct FlashEncryptionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flash-encryption",
        abstract: "Host-side flash encryption and decryption.",
        subcommands: []
    )
}
