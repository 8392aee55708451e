import ArgumentParser

struct SecureBootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secure-boot",
        abstract: "Secure Boot V2: keys, signing, verification, eFuse digests.",
        subcommands: []
    )
}
