import ArgumentParser

struct OtadataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otadata",
        abstract: "Build and parse OTA data partitions.",
        subcommands: []
    )
}
