import ArgumentParser

struct PartitionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partitions",
        abstract: "Build, show and validate partition tables.",
        subcommands: []
    )
}
